package jsonfix

import (
	"strings"
	"testing"

	"github.com/projectcalico/calico/lib/std/uniquelabels"
	"github.com/projectcalico/calico/libcalico-go/lib/backend/model"
	"github.com/projectcalico/calico/libcalico-go/lib/json"
)

// Without this package the Marshal below panics when built with Go 1.26.
func TestLabelsRoundTripThroughCalicosJSON(t *testing.T) {
	in := &model.WorkloadEndpoint{
		Name:   "cali0123456789a",
		Labels: uniquelabels.Make(map[string]string{"app": "web", "bench-stamp": "3.1700000000000000000"}),
	}
	out, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"labels":{"app":"web","bench-stamp":"3.1700000000000000000"}`) {
		t.Fatalf("labels not encoded as a map: %s", out)
	}
	var back model.WorkloadEndpoint
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if v, ok := back.Labels.GetString("bench-stamp"); !ok || v != "3.1700000000000000000" {
		t.Fatalf("label after the round trip: %q %v", v, ok)
	}
	// Empty and nil label maps encode as encoding/json does for the same Map.
	for _, m := range []uniquelabels.Map{uniquelabels.Empty, uniquelabels.Nil} {
		out, err := json.Marshal(&model.WorkloadEndpoint{Labels: m})
		want, _ := m.MarshalJSON()
		if err != nil || !strings.Contains(string(out), `"labels":`+string(want)) {
			t.Fatalf("%s (%v), want labels %s", out, err, want)
		}
	}
}
