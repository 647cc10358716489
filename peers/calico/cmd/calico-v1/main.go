// calico-v1: the oracle for meshsync's v1 data model (crates/meshsync-typha/src/v1). It runs
// Calico's REAL code on v3 resources the way Typha's pipeline does, and prints the keys and values
// Typha would put on the wire, so that meshsync's own conversion can be compared with it.
//
// Usage:
//
//	calico-v1 < resources.jsonl > updates.jsonl
//	calico-v1 -config-fields      # the FelixConfiguration/ClusterInformation spec fields, as JSON
//
// Input: one JSON object per line, a resource as meshsync's cache holds it:
//
//	{"syncer":"felix","kind":"FelixConfiguration","namespace":"","name":"default",
//	 "value":{...v3 JSON...},"deleted":false,"revision":"42","datastore":"kubernetes"}
//
// Its fields:
//   - syncer: felix | bgp | tunnel-ip-allocation | node-status;
//   - kind, namespace, name: the cache's key; value: its JSON (for a deletion, the last value);
//   - revision (optional): the datastore revision; like Calico's backends, it becomes the v3
//     object's metadata.resourceVersion and the KVPair's revision;
//   - datastore (optional): "kubernetes" (default) or "etcdv3"; the felix syncer carries the
//     Kubernetes-only kinds (KubernetesNetworkPolicy, …, KubernetesService) only for the former.
//
// Output: one JSON line per input line, in order:
//
//	{"updates":[{"key":"/calico/v1/config/LogSeverityScreen","value":"Info","v3_resource_version":""}, …],
//	 "error":"…"}
//
// key is syncproto.SerializeUpdate's Key (model.KeyToDefaultPath), value its Value as a string
// (null for a deletion), v3_resource_version its V3ResourceVersion; error (omitted when empty) is
// what the update processor or the value's decoding reported (Typha logs it; the updates the
// processor returned alongside are still listed); warnings (omitted when none) what Calico logged
// at warning level meanwhile, e.g. why the validation filter turned a value into a deletion. A
// kind the syncer does not carry gives no updates.
//
// The pipeline, per line:
//  1. The value is decoded as Calico's backend hands it to the syncer: a v3 resource
//     (model.ParseValue for its ResourceKey), or for IPAM blocks and block affinities the v1
//     model the backend makes of them (resources.IPAMBlockV3toV1 for an IPAMBlock resource, the
//     raw model.AllocationBlock JSON of Calico's etcd layout as it is; a BlockAffinity resource
//     as Calico's KDD block-affinity client converts it).
//  2. The syncer's update processor for the kind, as felixsyncerv1.go (isLeader=true, as Typha
//     runs it), bgpsyncer.go, tunnelipsyncer.go and nodestatussyncer.go wire them; kinds without
//     one pass through as they are. A FRESH processor per line: the result depends on this
//     resource only. A deletion is what the watcher cache does on a v3 deletion (the old key,
//     value nil), after the processor has first seen the last value, so that stateful
//     processors (IPPool's conflict resolution, config annotations seen before) know it.
//  3. Typha's ValidationFilter (typha/pkg/calc), then syncproto.SerializeUpdate per update.
//
// Not reproduced: the watcher cache's suppression of deletions for keys it never sent and of
// updates with an unchanged revision (stateful: left to the consumer), K8sUsePodCIDR (Calico
// IPAM assumed, as Typha's default), and state across lines.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"

	apiv3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	libapiv3 "github.com/projectcalico/calico/libcalico-go/lib/apis/v3"
	"github.com/projectcalico/calico/libcalico-go/lib/backend/api"
	"github.com/projectcalico/calico/libcalico-go/lib/backend/k8s/conversion"
	"github.com/projectcalico/calico/libcalico-go/lib/backend/k8s/resources"
	"github.com/projectcalico/calico/libcalico-go/lib/backend/model"
	"github.com/projectcalico/calico/libcalico-go/lib/backend/syncersv1/updateprocessors"
	"github.com/projectcalico/calico/libcalico-go/lib/backend/watchersyncer"
	cerrors "github.com/projectcalico/calico/libcalico-go/lib/errors"
	cnet "github.com/projectcalico/calico/libcalico-go/lib/net"
	"github.com/projectcalico/calico/typha/pkg/calc"
	"github.com/projectcalico/calico/typha/pkg/syncproto"

	log "github.com/sirupsen/logrus"

	_ "meshsync.test/peers/calico/internal/jsonfix"
)

type input struct {
	Syncer    string          `json:"syncer"`
	Kind      string          `json:"kind"`
	Namespace string          `json:"namespace"`
	Name      string          `json:"name"`
	Value     json.RawMessage `json:"value"`
	Deleted   bool            `json:"deleted"`
	Revision  string          `json:"revision"`
	Datastore string          `json:"datastore"`
}

type outUpdate struct {
	Key               string  `json:"key"`
	Value             *string `json:"value"`
	V3ResourceVersion string  `json:"v3_resource_version"`
}

type output struct {
	Updates  []outUpdate `json:"updates"`
	Error    string      `json:"error,omitempty"`
	Warnings []string    `json:"warnings,omitempty"`
}

// warnings collects what Calico logs at warning level or above while it handles one line (the
// validation filter's "Validation failed; treating as missing" with its reason, a processor's
// parse failures).
type warnings struct{ messages []string }

func (w *warnings) Levels() []log.Level {
	return []log.Level{log.PanicLevel, log.FatalLevel, log.ErrorLevel, log.WarnLevel}
}

func (w *warnings) Fire(e *log.Entry) error {
	msg := e.Message
	if err, ok := e.Data[log.ErrorKey].(error); ok {
		msg += ": " + err.Error()
	}
	w.messages = append(w.messages, msg)
	return nil
}

// source says how the backend hands a kind to the syncer.
type source int

const (
	sourceV3       source = iota // a v3 resource under a ResourceKey
	sourceBlock                  // model.BlockListOptions: BlockKey → *model.AllocationBlock
	sourceAffinity               // model.BlockAffinityListOptions: BlockAffinityKey → *model.BlockAffinity
)

type wiring struct {
	carried   bool
	source    source
	processor func() watchersyncer.SyncerUpdateProcessor
}

func v3(p func() watchersyncer.SyncerUpdateProcessor) wiring {
	return wiring{carried: true, source: sourceV3, processor: p}
}

var passThrough = wiring{carried: true, source: sourceV3}

// wire is the resource list of each syncer's New, kind by kind.
func wire(syncer, kind, datastore string) wiring {
	switch syncer {
	case "felix", "":
		switch kind {
		case apiv3.KindClusterInformation:
			return v3(updateprocessors.NewClusterInfoUpdateProcessor)
		case apiv3.KindFelixConfiguration:
			return v3(updateprocessors.NewFelixConfigUpdateProcessor)
		case apiv3.KindGlobalNetworkPolicy:
			return v3(updateprocessors.NewGlobalNetworkPolicyUpdateProcessor)
		case apiv3.KindStagedGlobalNetworkPolicy:
			return v3(updateprocessors.NewStagedGlobalNetworkPolicyUpdateProcessor)
		case apiv3.KindGlobalNetworkSet:
			return v3(updateprocessors.NewGlobalNetworkSetUpdateProcessor)
		case apiv3.KindIPPool:
			return v3(updateprocessors.NewIPPoolUpdateProcessor)
		case libapiv3.KindNode:
			return v3(func() watchersyncer.SyncerUpdateProcessor {
				return updateprocessors.NewFelixNodeUpdateProcessor(false)
			})
		case apiv3.KindProfile:
			return v3(updateprocessors.NewProfileUpdateProcessor)
		case libapiv3.KindWorkloadEndpoint:
			return v3(updateprocessors.NewWorkloadEndpointUpdateProcessor)
		case apiv3.KindNetworkPolicy:
			return v3(updateprocessors.NewNetworkPolicyUpdateProcessor)
		case apiv3.KindStagedNetworkPolicy:
			return v3(updateprocessors.NewStagedNetworkPolicyUpdateProcessor)
		case apiv3.KindStagedKubernetesNetworkPolicy:
			return v3(updateprocessors.NewStagedKubernetesNetworkPolicyUpdateProcessor)
		case apiv3.KindNetworkSet:
			return v3(updateprocessors.NewNetworkSetUpdateProcessor)
		case apiv3.KindTier:
			return v3(updateprocessors.NewTierUpdateProcessor)
		case apiv3.KindHostEndpoint:
			return v3(updateprocessors.NewHostEndpointUpdateProcessor)
		case apiv3.KindBGPConfiguration, apiv3.KindBGPPeer:
			return passThrough
		case "IPAMBlock":
			return wiring{carried: true, source: sourceBlock}
		}
		if datastore == "" || datastore == "kubernetes" {
			switch kind {
			case model.KindKubernetesNetworkPolicy:
				return v3(updateprocessors.NewNetworkPolicyUpdateProcessor)
			case model.KindKubernetesAdminNetworkPolicy, model.KindKubernetesBaselineAdminNetworkPolicy:
				return v3(updateprocessors.NewGlobalNetworkPolicyUpdateProcessor)
			case model.KindKubernetesEndpointSlice, model.KindKubernetesService:
				return passThrough
			}
		}
	case "bgp":
		switch kind {
		case apiv3.KindIPPool:
			return v3(updateprocessors.NewIPPoolUpdateProcessor)
		case apiv3.KindBGPConfiguration, libapiv3.KindNode, apiv3.KindBGPPeer, apiv3.KindBGPFilter:
			return passThrough
		case libapiv3.KindBlockAffinity:
			return wiring{carried: true, source: sourceAffinity}
		}
	case "tunnel-ip-allocation":
		switch kind {
		case apiv3.KindIPPool:
			return v3(updateprocessors.NewIPPoolUpdateProcessor)
		case libapiv3.KindNode:
			return passThrough
		}
	case "node-status":
		if kind == apiv3.KindCalicoNodeStatus {
			return passThrough
		}
	}
	return wiring{}
}

// decode turns the cache's value into the KVPair Calico's backend would hand the syncer.
func decode(in *input, src source) (*model.KVPair, error) {
	switch src {
	case sourceBlock:
		var probe struct {
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal(in.Value, &probe); err != nil {
			return nil, err
		}
		if probe.Kind == "IPAMBlock" {
			var blk libapiv3.IPAMBlock
			if err := json.Unmarshal(in.Value, &blk); err != nil {
				return nil, err
			}
			return resources.IPAMBlockV3toV1(&model.KVPair{Value: &blk, Revision: in.Revision})
		}
		// Calico's etcd layout: the AllocationBlock JSON itself (the key comes from the etcd
		// path, which names the same CIDR as the value).
		v, err := model.ParseValue(model.BlockKey{}, in.Value)
		if err != nil {
			return nil, err
		}
		ab, ok := v.(*model.AllocationBlock)
		if !ok {
			return nil, fmt.Errorf("block value is a %T", v)
		}
		return &model.KVPair{Key: model.BlockKey{CIDR: ab.CIDR}, Value: ab, Revision: in.Revision}, nil
	case sourceAffinity:
		var aff libapiv3.BlockAffinity
		if err := json.Unmarshal(in.Value, &aff); err != nil {
			return nil, err
		}
		if aff.Kind != libapiv3.KindBlockAffinity {
			return nil, fmt.Errorf("a block affinity must be a BlockAffinity resource")
		}
		// As the KDD block-affinity client's toV1 (unexported in Calico).
		_, cidr, err := cnet.ParseCIDR(aff.Spec.CIDR)
		if err != nil {
			return nil, err
		}
		del := false
		if aff.Spec.Deleted != "" {
			if del, err = strconv.ParseBool(aff.Spec.Deleted); err != nil {
				return nil, fmt.Errorf("Failed to parse deleted value as bool: %s", err)
			}
		}
		return &model.KVPair{
			Key:      model.BlockAffinityKey{CIDR: *cidr, AffinityType: aff.Spec.Type, Host: aff.Spec.Node},
			Value:    &model.BlockAffinity{State: model.BlockAffinityState(aff.Spec.State), Deleted: del},
			Revision: in.Revision,
		}, nil
	}
	if in.Kind == model.KindKubernetesNetworkPolicy {
		return decodeKubernetesNetworkPolicy(in)
	}
	key := model.ResourceKey{Kind: in.Kind, Namespace: in.Namespace, Name: in.Name}
	v, err := model.ParseValue(key, in.Value)
	if err != nil {
		return nil, err
	}
	if obj, ok := v.(metav1.Object); ok && in.Revision != "" {
		obj.SetResourceVersion(in.Revision)
	}
	return &model.KVPair{Key: key, Value: v, Revision: in.Revision}, nil
}

// decodeKubernetesNetworkPolicy is what Calico's KDD NetworkPolicy client
// (k8s/resources/kubenetworkpolicy.go) hands the syncer for a networking.k8s.io NetworkPolicy:
// the Calico NetworkPolicy `knp.default.<name>` converted from it, rules that cannot be converted
// dropped. meshsync's cache holds the Kubernetes object's metadata and spec under the kind
// KubernetesNetworkPolicy, which decodes as one.
func decodeKubernetesNetworkPolicy(in *input) (*model.KVPair, error) {
	var np networkingv1.NetworkPolicy
	if err := json.Unmarshal(in.Value, &np); err != nil {
		return nil, err
	}
	np.Namespace, np.Name, np.ResourceVersion = in.Namespace, in.Name, in.Revision
	kvp, err := conversion.NewConverter().K8sNetworkPolicyToCalico(&np)
	var convErr *cerrors.ErrorPolicyConversion
	if err != nil && !errors.As(err, &convErr) {
		return nil, err
	}
	return kvp, nil
}

type sink struct{ updates []api.Update }

func (s *sink) OnStatusUpdated(api.SyncStatus) {}
func (s *sink) OnUpdates(updates []api.Update) { s.updates = append(s.updates, updates...) }

func run(in *input) output {
	out := output{Updates: []outUpdate{}}
	w := wire(in.Syncer, in.Kind, in.Datastore)
	if !w.carried {
		return out
	}
	kvp, err := decode(in, w.source)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	var kvps []*model.KVPair
	var perr error
	if w.processor == nil {
		if in.Deleted {
			kvps = []*model.KVPair{{Key: kvp.Key, Revision: kvp.Revision}}
		} else {
			kvps = []*model.KVPair{kvp}
		}
	} else {
		p := w.processor()
		p.OnSyncerStarting()
		if in.Deleted {
			_, _ = p.Process(kvp)
			kvps, perr = p.Process(&model.KVPair{Key: kvp.Key, Revision: kvp.Revision})
		} else {
			kvps, perr = p.Process(kvp)
		}
	}
	if perr != nil {
		out.Error = perr.Error()
	}

	var updates []api.Update
	for _, kv := range kvps {
		if kv.Key == nil {
			// The config processor's deletion of a per-node ClusterInformation lists the ready
			// flag's nil key (Calico's watcher cache would panic on it): nothing to send.
			continue
		}
		t := api.UpdateTypeKVNew
		if kv.Value == nil {
			t = api.UpdateTypeKVDeleted
		}
		updates = append(updates, api.Update{KVPair: *kv, UpdateType: t})
	}
	s := &sink{}
	calc.NewValidationFilter(s).OnUpdates(updates)
	for _, u := range s.updates {
		su, err := syncproto.SerializeUpdate(u)
		if err != nil {
			// Typha's snapshot cache drops an update whose key it cannot serialize.
			continue
		}
		o := outUpdate{Key: su.Key, V3ResourceVersion: su.V3ResourceVersion}
		if su.Value != nil {
			v := string(su.Value)
			o.Value = &v
		}
		out.Updates = append(out.Updates, o)
	}
	return out
}

// configField describes one spec field for meshsync's config table.
type configField struct {
	Go        string `json:"go"`
	JSON      string `json:"json"`
	V1        string `json:"v1"`
	Type      string `json:"type"`
	Pointer   bool   `json:"pointer"`
	Timescale string `json:"timescale,omitempty"`
}

func configFields(t reflect.Type) []configField {
	var fields []configField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Tag.Get("confignamev1")
		if name == "" {
			name = f.Name
		}
		ft := f.Type
		ptr := ft.Kind() == reflect.Ptr
		if ptr {
			ft = ft.Elem()
		}
		jsonName := f.Tag.Get("json")
		for j := 0; j < len(jsonName); j++ {
			if jsonName[j] == ',' {
				jsonName = jsonName[:j]
				break
			}
		}
		fields = append(fields, configField{
			Go: f.Name, JSON: jsonName, V1: name, Type: ft.String(), Pointer: ptr,
			Timescale: f.Tag.Get("configv1timescale"),
		})
	}
	return fields
}

func main() {
	printFields := flag.Bool("config-fields", false,
		"print the FelixConfiguration and ClusterInformation spec fields (Go name, JSON name, v1 name, type) and exit")
	flag.Parse()
	log.SetLevel(log.WarnLevel)
	log.SetOutput(io.Discard)
	logged := &warnings{}
	log.AddHook(logged)
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if *printFields {
		_ = enc.Encode(map[string][]configField{
			"FelixConfiguration": configFields(reflect.TypeOf(apiv3.FelixConfigurationSpec{})),
			"ClusterInformation": configFields(reflect.TypeOf(apiv3.ClusterInformationSpec{})),
		})
		return
	}
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	for scanner.Scan() {
		line := scanner.Bytes()
		if len(line) == 0 {
			continue
		}
		var in input
		var out output
		logged.messages = nil
		if err := json.Unmarshal(line, &in); err != nil {
			out = output{Updates: []outUpdate{}, Error: "bad input line: " + err.Error()}
		} else {
			out = run(&in)
		}
		out.Warnings = logged.messages
		if err := enc.Encode(out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
