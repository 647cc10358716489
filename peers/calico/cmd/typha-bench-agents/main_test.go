package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/projectcalico/calico/lib/std/uniquelabels"
	"github.com/projectcalico/calico/libcalico-go/lib/backend/api"
	"github.com/projectcalico/calico/libcalico-go/lib/backend/model"
)

func TestHistogramSummary(t *testing.T) {
	h := &histogram{}
	for v := uint64(1); v <= 10_000; v++ {
		h.record(v)
	}
	l := h.summarize()
	if l.Count != 10_000 {
		t.Fatalf("count %d", l.Count)
	}
	for _, c := range []struct {
		name   string
		got    uint64
		lo, hi uint64
	}{
		{"p50", l.P50Us, 4990, 5010},
		{"p90", l.P90Us, 8990, 9010},
		{"p99", l.P99Us, 9890, 9910},
		{"p99.9", l.P999Us, 9980, 10_010},
		{"max", l.MaxUs, 10_000, 10_010},
	} {
		if c.got < c.lo || c.got > c.hi {
			t.Errorf("%s = %d, want %d..%d", c.name, c.got, c.lo, c.hi)
		}
	}
	if len(l.Cdf) < 60 || len(l.Cdf) > cdfPoints {
		t.Fatalf("%d CDF points", len(l.Cdf))
	}
	for i := 1; i < len(l.Cdf); i++ {
		if l.Cdf[i].us <= l.Cdf[i-1].us || l.Cdf[i].fraction < l.Cdf[i-1].fraction {
			t.Fatalf("CDF not increasing at %d: %v", i, l.Cdf[i-1:i+1])
		}
	}
	if l.Cdf[0].us != 1 || l.Cdf[len(l.Cdf)-1].fraction != 1 {
		t.Fatalf("CDF ends %v %v", l.Cdf[0], l.Cdf[len(l.Cdf)-1])
	}
	one := &histogram{}
	one.record(42)
	if l := one.summarize(); len(l.Cdf) != 1 || l.Cdf[0] != (cdfPoint{42, 1}) || l.P50Us != 42 {
		t.Fatalf("single value: %+v", l)
	}
	// Large values keep three significant digits and are clamped at the top.
	big := &histogram{}
	big.record(123_456_789)
	big.record(maxLatencyUs * 2)
	if p := big.valueAtQuantile(0.5); p < 123_456_789 || p > 123_456_789*1001/1000 {
		t.Fatalf("p50 of big values %d", p)
	}
	if m := big.summarize().MaxUs; m < maxLatencyUs || m > maxLatencyUs*1001/1000 {
		t.Fatalf("max %d", m)
	}
}

func TestMessagesAreTheRustShapes(t *testing.T) {
	h := &histogram{}
	h.record(1500)
	l := h.summarize()
	for _, c := range []struct {
		m    message
		want string
	}{
		{message{Type: "progress", Failed: 1, Received: 7}, `{"type":"progress","synced":0,"failed":1,"received":7}`},
		{message{Type: "synced", PerAgentS: []float64{0.5}}, `{"type":"synced","per_agent_s":[0.5],"failed":0}`},
		{message{Type: "report", Received: 1, Latency: &l}, `{"type":"report","received":1,"latency":{"count":1,"p50_us":1500,"p90_us":1500,"p99_us":1500,"p999_us":1500,"max_us":1500,"cdf":[[1500,1]]}}`},
		{message{Type: "report"}, `{"type":"report","received":0,"latency":{"count":0,"p50_us":0,"p90_us":0,"p99_us":0,"p999_us":0,"max_us":0,"cdf":[]}}`},
		{message{Type: "error", Message: "x"}, `{"type":"error","message":"x"}`},
	} {
		got, err := json.Marshal(c.m)
		if err != nil || string(got) != c.want {
			t.Errorf("got %s (%v), want %s", got, err, c.want)
		}
	}
}

func wep(stamp string) api.Update {
	return api.Update{KVPair: model.KVPair{
		Key:   model.WorkloadEndpointKey{Hostname: "n", OrchestratorID: "k8s", WorkloadID: "bench/p", EndpointID: "eth0"},
		Value: &model.WorkloadEndpoint{Labels: uniquelabels.Make(map[string]string{stampLabel: stamp, "app": "a"})},
	}}
}

func TestOnlyTheCurrentGenerationIsRecorded(t *testing.T) {
	r := newRecorder(1)
	now := int64(1_700_000_000_000_000_000)
	old := wep("1.1699999999995000000")
	cur := wep("2.1699999999997000000")
	r.record(0, now, []api.Update{old, cur})
	if r.received() != 0 {
		t.Fatal("counted before the first reset")
	}
	r.reset(2)
	r.record(0, now, []api.Update{old, cur, wep("junk"), {KVPair: model.KVPair{Key: model.ProfileRulesKey{}}}})
	r.record(65, now, []api.Update{cur})
	h := r.merged()
	if h.total != 2 || h.max < 2990 || h.max > 3010 {
		t.Fatalf("total %d max %d", h.total, h.max)
	}
	r.reset(3)
	if r.received() != 0 {
		t.Fatal("reset kept counts")
	}
}

func TestClientSyncsOnInSyncWithEveryKey(t *testing.T) {
	o := &options{keys: 2, attempts: 2}
	r := newRecorder(1)
	c := &client{o: o, rec: r, entries: map[string]any{}, stop: func() {}}
	c.OnStatusUpdated(api.ResyncInProgress)
	a, b := wep("0.1"), wep("0.1")
	b.Key = model.WorkloadEndpointKey{Hostname: "n", OrchestratorID: "k8s", WorkloadID: "bench/q", EndpointID: "eth0"}
	c.OnUpdatesKeysKnown([]api.Update{a}, []string{"a"})
	c.OnStatusUpdated(api.InSync)
	if c.synced {
		t.Fatal("synced with one key of two")
	}
	c.OnUpdatesKeysKnown([]api.Update{b}, []string{"b"})
	if !c.synced || r.synced.Load() != 1 {
		t.Fatal("not synced with both keys after in-sync")
	}
	// A deletion and a reconnect are not failures once synced.
	del := a
	del.Value = nil
	c.OnUpdatesKeysKnown([]api.Update{del}, []string{"a"})
	c.OnTyphaConnectionRestarted()
	if r.failed.Load() != 0 || r.reconnects.Load() != 1 || c.live {
		t.Fatalf("failed %d reconnects %d", r.failed.Load(), r.reconnects.Load())
	}
	if !strings.HasPrefix(string(must(json.Marshal(r.progress()))), `{"type":"progress","synced":1`) {
		t.Fatal("progress does not count the synced client")
	}
}

func TestClientFailsAfterAttempts(t *testing.T) {
	r := newRecorder(1)
	stopped := false
	c := &client{o: &options{keys: 1, attempts: 2}, rec: r, entries: map[string]any{}, stop: func() { stopped = true }}
	c.OnTyphaConnectionRestarted()
	if r.failed.Load() != 0 {
		t.Fatal("failed after one lost connection")
	}
	c.OnTyphaConnectionRestarted()
	if r.failed.Load() != 1 || !stopped {
		t.Fatal("not failed after two lost connections")
	}
	select {
	case <-r.allDone:
	default:
		t.Fatal("the only client failed but allDone is open")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
