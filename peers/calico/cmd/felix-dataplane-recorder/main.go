// felix-dataplane-recorder: a TEST DOUBLE of Felix's Linux dataplane, for meshsync's tests. It is
// an external dataplane driver (FELIX_USEINTERNALDATAPLANEDRIVER=false,
// FELIX_DATAPLANEDRIVER=<this program>): instead of programming iptables, IP sets, routes and
// VXLAN devices it keeps the state Felix asks for and writes it as one JSON document, so that a
// test can compare what Felix would program when fed by two different Typha servers.
//
// Protocol (felix/dataplane/external in Calico): Felix starts the driver with the read end of a
// pipe as fd 3 (messages from Felix) and the write end of another as fd 4 (messages to Felix).
// Each message is an 8-byte little-endian length and a felix/proto ToDataplane protobuf. Felix
// needs nothing back: the messages a driver may send (process, endpoint and WireGuard status)
// only feed status reporting, which these tests do not use. So fd 4 is held open and never
// written; Felix treats EOF on it as a dead driver and shuts down.
//
// After each burst of messages (when no message is waiting, and at least every 100 ms during a
// long burst) the state is written atomically (temporary file, then rename) to the path in
// FELIX_RECORDER_STATE, which is required. On EOF of fd 3 the final state is written and the
// program exits 0; a malformed message is fatal (exit 2), as a real driver would fail.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	pb "google.golang.org/protobuf/proto"

	"github.com/projectcalico/calico/felix/proto"
)

// maxMessage bounds one message's length (Felix's largest are IP set updates; 64 MiB is far
// above anything a test sends, and keeps a corrupt length from allocating without limit).
const maxMessage = 64 << 20

// flushEvery is the longest time state changes stay unwritten during a long burst.
const flushEvery = 100 * time.Millisecond

// State is the document written to FELIX_RECORDER_STATE.
type State struct {
	InSync            bool                        `json:"in_sync"`
	Messages          map[string]uint64           `json:"messages"`
	Config            map[string]string           `json:"config"`
	IPSets            map[string][]string         `json:"ipsets"`
	Policies          map[string]Policy           `json:"policies"`
	Profiles          map[string]Profile          `json:"profiles"`
	SelectorIPSets    map[string]string           `json:"selector_ipsets"`
	Routes            map[string]Route            `json:"routes"`
	VTEPs             map[string]VTEP             `json:"vteps"`
	WorkloadEndpoints map[string]WorkloadEndpoint `json:"workload_endpoints"`
	HostEndpoints     map[string]HostEndpoint     `json:"host_endpoints"`
	Encapsulation     *Encapsulation              `json:"encapsulation"`
	IPAMPools         map[string]IPAMPool         `json:"ipam_pools"`
}

type Rule struct {
	Action                 string   `json:"action"`
	SrcIPSetIDs            []string `json:"src_ip_set_ids,omitempty"`
	DstIPSetIDs            []string `json:"dst_ip_set_ids,omitempty"`
	NotSrcIPSetIDs         []string `json:"not_src_ip_set_ids,omitempty"`
	NotDstIPSetIDs         []string `json:"not_dst_ip_set_ids,omitempty"`
	SrcNets                []string `json:"src_net,omitempty"`
	DstNets                []string `json:"dst_net,omitempty"`
	OriginalSrcSelector    string   `json:"original_src_selector,omitempty"`
	OriginalDstSelector    string   `json:"original_dst_selector,omitempty"`
	OriginalNotSrcSelector string   `json:"original_not_src_selector,omitempty"`
	OriginalNotDstSelector string   `json:"original_not_dst_selector,omitempty"`
	OriginalSrcNSSelector  string   `json:"original_src_namespace_selector,omitempty"`
	OriginalDstNSSelector  string   `json:"original_dst_namespace_selector,omitempty"`
	RuleID                 string   `json:"rule_id,omitempty"`
}

type Policy struct {
	Namespace        string `json:"namespace,omitempty"`
	OriginalSelector string `json:"original_selector"`
	InboundRules     []Rule `json:"inbound_rules"`
	OutboundRules    []Rule `json:"outbound_rules"`
	Untracked        bool   `json:"untracked,omitempty"`
	PreDNAT          bool   `json:"pre_dnat,omitempty"`
}

type Profile struct {
	InboundRules  []Rule `json:"inbound_rules"`
	OutboundRules []Rule `json:"outbound_rules"`
}

type Route struct {
	Types         string `json:"types"`
	IPPoolType    string `json:"ip_pool_type"`
	DstNodeName   string `json:"dst_node_name,omitempty"`
	DstNodeIP     string `json:"dst_node_ip,omitempty"`
	SameSubnet    bool   `json:"same_subnet,omitempty"`
	NATOutgoing   bool   `json:"nat_outgoing,omitempty"`
	LocalWorkload bool   `json:"local_workload,omitempty"`
	Borrowed      bool   `json:"borrowed,omitempty"`
}

type VTEP struct {
	ParentDeviceIP string `json:"parent_device_ip"`
	MAC            string `json:"mac"`
	IPv4Addr       string `json:"ipv4_addr"`
}

type Tier struct {
	Name            string   `json:"name"`
	IngressPolicies []string `json:"ingress_policies,omitempty"`
	EgressPolicies  []string `json:"egress_policies,omitempty"`
	DefaultAction   string   `json:"default_action,omitempty"`
}

type WorkloadEndpoint struct {
	Name       string   `json:"name"`
	State      string   `json:"state"`
	IPv4Nets   []string `json:"ipv4_nets,omitempty"`
	IPv6Nets   []string `json:"ipv6_nets,omitempty"`
	ProfileIDs []string `json:"profile_ids,omitempty"`
	Tiers      []Tier   `json:"tiers,omitempty"`
}

type HostEndpoint struct {
	Name              string   `json:"name"`
	ProfileIDs        []string `json:"profile_ids,omitempty"`
	ExpectedIPv4Addrs []string `json:"expected_ipv4_addrs,omitempty"`
	Tiers             []Tier   `json:"tiers,omitempty"`
}

type Encapsulation struct {
	IPIPEnabled    bool `json:"ipip_enabled"`
	VXLANEnabled   bool `json:"vxlan_enabled"`
	VXLANEnabledV6 bool `json:"vxlan_enabled_v6"`
}

type IPAMPool struct {
	CIDR       string `json:"cidr"`
	Masquerade bool   `json:"masquerade"`
	IPIPMode   string `json:"ipip_mode"`
	VXLANMode  string `json:"vxlan_mode"`
}

// recorder holds the state; IP sets as sets so that deltas apply exactly.
type recorder struct {
	state  State
	ipsets map[string]map[string]struct{}
}

func newRecorder() *recorder {
	return &recorder{
		state: State{
			Messages:          map[string]uint64{},
			Config:            map[string]string{},
			Policies:          map[string]Policy{},
			Profiles:          map[string]Profile{},
			Routes:            map[string]Route{},
			VTEPs:             map[string]VTEP{},
			WorkloadEndpoints: map[string]WorkloadEndpoint{},
			HostEndpoints:     map[string]HostEndpoint{},
			IPAMPools:         map[string]IPAMPool{},
		},
		ipsets: map[string]map[string]struct{}{},
	}
}

func policyKey(id *proto.PolicyID) string {
	if id.GetTier() == "" {
		return id.GetName()
	}
	return id.GetTier() + "/" + id.GetName()
}

func workloadKey(id *proto.WorkloadEndpointID) string {
	return id.GetOrchestratorId() + "/" + id.GetWorkloadId() + "/" + id.GetEndpointId()
}

func rules(in []*proto.Rule) []Rule {
	out := make([]Rule, 0, len(in))
	for _, r := range in {
		out = append(out, Rule{
			Action:                 r.GetAction(),
			SrcIPSetIDs:            r.GetSrcIpSetIds(),
			DstIPSetIDs:            r.GetDstIpSetIds(),
			NotSrcIPSetIDs:         r.GetNotSrcIpSetIds(),
			NotDstIPSetIDs:         r.GetNotDstIpSetIds(),
			SrcNets:                r.GetSrcNet(),
			DstNets:                r.GetDstNet(),
			OriginalSrcSelector:    r.GetOriginalSrcSelector(),
			OriginalDstSelector:    r.GetOriginalDstSelector(),
			OriginalNotSrcSelector: r.GetOriginalNotSrcSelector(),
			OriginalNotDstSelector: r.GetOriginalNotDstSelector(),
			OriginalSrcNSSelector:  r.GetOriginalSrcNamespaceSelector(),
			OriginalDstNSSelector:  r.GetOriginalDstNamespaceSelector(),
			RuleID:                 r.GetRuleId(),
		})
	}
	return out
}

func tiers(in []*proto.TierInfo) []Tier {
	out := make([]Tier, 0, len(in))
	for _, t := range in {
		out = append(out, Tier{
			Name:            t.GetName(),
			IngressPolicies: t.GetIngressPolicies(),
			EgressPolicies:  t.GetEgressPolicies(),
			DefaultAction:   t.GetDefaultAction(),
		})
	}
	return out
}

// routeTypes spells the RouteType bit mask as its names joined by "|" ("CIDR_INFO" for 0).
func routeTypes(t proto.RouteType) string {
	if t == proto.RouteType_CIDR_INFO {
		return proto.RouteType_CIDR_INFO.String()
	}
	var names []string
	for bit := proto.RouteType(1); bit != 0 && bit <= t; bit <<= 1 {
		if t&bit == 0 {
			continue
		}
		if name, ok := proto.RouteType_name[int32(bit)]; ok {
			names = append(names, name)
		} else {
			names = append(names, fmt.Sprintf("%d", int32(bit)))
		}
	}
	return strings.Join(names, "|")
}

func (r *recorder) apply(msg *proto.ToDataplane) {
	s := &r.state
	if field := msg.ProtoReflect().WhichOneof(msg.ProtoReflect().Descriptor().Oneofs().ByName("payload")); field != nil {
		s.Messages[string(field.Name())]++
	} else {
		s.Messages["unknown"]++
	}
	switch p := msg.Payload.(type) {
	case *proto.ToDataplane_InSync:
		s.InSync = true
	case *proto.ToDataplane_ConfigUpdate:
		s.Config = map[string]string{}
		for k, v := range p.ConfigUpdate.GetConfig() {
			s.Config[k] = v
		}
	case *proto.ToDataplane_IpsetUpdate:
		members := map[string]struct{}{}
		for _, m := range p.IpsetUpdate.GetMembers() {
			members[m] = struct{}{}
		}
		r.ipsets[p.IpsetUpdate.GetId()] = members
	case *proto.ToDataplane_IpsetDeltaUpdate:
		members, ok := r.ipsets[p.IpsetDeltaUpdate.GetId()]
		if !ok {
			// Felix never sends a delta for a set it has not created; keep it visible anyway.
			members = map[string]struct{}{}
			r.ipsets[p.IpsetDeltaUpdate.GetId()] = members
		}
		for _, m := range p.IpsetDeltaUpdate.GetRemovedMembers() {
			delete(members, m)
		}
		for _, m := range p.IpsetDeltaUpdate.GetAddedMembers() {
			members[m] = struct{}{}
		}
	case *proto.ToDataplane_IpsetRemove:
		delete(r.ipsets, p.IpsetRemove.GetId())
	case *proto.ToDataplane_ActivePolicyUpdate:
		pol := p.ActivePolicyUpdate.GetPolicy()
		s.Policies[policyKey(p.ActivePolicyUpdate.GetId())] = Policy{
			Namespace:        pol.GetNamespace(),
			OriginalSelector: pol.GetOriginalSelector(),
			InboundRules:     rules(pol.GetInboundRules()),
			OutboundRules:    rules(pol.GetOutboundRules()),
			Untracked:        pol.GetUntracked(),
			PreDNAT:          pol.GetPreDnat(),
		}
	case *proto.ToDataplane_ActivePolicyRemove:
		delete(s.Policies, policyKey(p.ActivePolicyRemove.GetId()))
	case *proto.ToDataplane_ActiveProfileUpdate:
		prof := p.ActiveProfileUpdate.GetProfile()
		s.Profiles[p.ActiveProfileUpdate.GetId().GetName()] = Profile{
			InboundRules:  rules(prof.GetInboundRules()),
			OutboundRules: rules(prof.GetOutboundRules()),
		}
	case *proto.ToDataplane_ActiveProfileRemove:
		delete(s.Profiles, p.ActiveProfileRemove.GetId().GetName())
	case *proto.ToDataplane_WorkloadEndpointUpdate:
		ep := p.WorkloadEndpointUpdate.GetEndpoint()
		s.WorkloadEndpoints[workloadKey(p.WorkloadEndpointUpdate.GetId())] = WorkloadEndpoint{
			Name:       ep.GetName(),
			State:      ep.GetState(),
			IPv4Nets:   ep.GetIpv4Nets(),
			IPv6Nets:   ep.GetIpv6Nets(),
			ProfileIDs: ep.GetProfileIds(),
			Tiers:      tiers(ep.GetTiers()),
		}
	case *proto.ToDataplane_WorkloadEndpointRemove:
		delete(s.WorkloadEndpoints, workloadKey(p.WorkloadEndpointRemove.GetId()))
	case *proto.ToDataplane_HostEndpointUpdate:
		ep := p.HostEndpointUpdate.GetEndpoint()
		s.HostEndpoints[p.HostEndpointUpdate.GetId().GetEndpointId()] = HostEndpoint{
			Name:              ep.GetName(),
			ProfileIDs:        ep.GetProfileIds(),
			ExpectedIPv4Addrs: ep.GetExpectedIpv4Addrs(),
			Tiers:             tiers(ep.GetTiers()),
		}
	case *proto.ToDataplane_HostEndpointRemove:
		delete(s.HostEndpoints, p.HostEndpointRemove.GetId().GetEndpointId())
	case *proto.ToDataplane_RouteUpdate:
		u := p.RouteUpdate
		s.Routes[u.GetDst()] = Route{
			Types:         routeTypes(u.GetTypes()),
			IPPoolType:    u.GetIpPoolType().String(),
			DstNodeName:   u.GetDstNodeName(),
			DstNodeIP:     u.GetDstNodeIp(),
			SameSubnet:    u.GetSameSubnet(),
			NATOutgoing:   u.GetNatOutgoing(),
			LocalWorkload: u.GetLocalWorkload(),
			Borrowed:      u.GetBorrowed(),
		}
	case *proto.ToDataplane_RouteRemove:
		delete(s.Routes, p.RouteRemove.GetDst())
	case *proto.ToDataplane_VtepUpdate:
		u := p.VtepUpdate
		s.VTEPs[u.GetNode()] = VTEP{
			ParentDeviceIP: u.GetParentDeviceIp(),
			MAC:            u.GetMac(),
			IPv4Addr:       u.GetIpv4Addr(),
		}
	case *proto.ToDataplane_VtepRemove:
		delete(s.VTEPs, p.VtepRemove.GetNode())
	case *proto.ToDataplane_Encapsulation:
		e := p.Encapsulation
		s.Encapsulation = &Encapsulation{
			IPIPEnabled:    e.GetIpipEnabled(),
			VXLANEnabled:   e.GetVxlanEnabled(),
			VXLANEnabledV6: e.GetVxlanEnabledV6(),
		}
	case *proto.ToDataplane_IpamPoolUpdate:
		pool := p.IpamPoolUpdate.GetPool()
		s.IPAMPools[p.IpamPoolUpdate.GetId()] = IPAMPool{
			CIDR:       pool.GetCidr(),
			Masquerade: pool.GetMasquerade(),
			IPIPMode:   pool.GetIpipMode(),
			VXLANMode:  pool.GetVxlanMode(),
		}
	case *proto.ToDataplane_IpamPoolRemove:
		delete(s.IPAMPools, p.IpamPoolRemove.GetId())
	}
}

// snapshot fills the derived fields: sorted IP set members and, from the active policies' and
// profiles' rules, each original selector's IP set (when the rule names exactly one set for it).
func (r *recorder) snapshot() *State {
	s := &r.state
	s.IPSets = make(map[string][]string, len(r.ipsets))
	for id, members := range r.ipsets {
		list := make([]string, 0, len(members))
		for m := range members {
			list = append(list, m)
		}
		sort.Strings(list)
		s.IPSets[id] = list
	}
	s.SelectorIPSets = map[string]string{}
	note := func(selector string, ids []string) {
		if selector != "" && len(ids) == 1 {
			s.SelectorIPSets[selector] = ids[0]
		}
	}
	noteRules := func(rs []Rule) {
		for _, rule := range rs {
			note(rule.OriginalSrcSelector, rule.SrcIPSetIDs)
			note(rule.OriginalDstSelector, rule.DstIPSetIDs)
			note(rule.OriginalNotSrcSelector, rule.NotSrcIPSetIDs)
			note(rule.OriginalNotDstSelector, rule.NotDstIPSetIDs)
		}
	}
	for _, p := range s.Policies {
		noteRules(p.InboundRules)
		noteRules(p.OutboundRules)
	}
	for _, p := range s.Profiles {
		noteRules(p.InboundRules)
		noteRules(p.OutboundRules)
	}
	return s
}

// write replaces the file at path with the state, atomically.
func write(path string, s *State) error {
	data, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(data, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}

// readMessages sends each message read from r, then the error that ended the stream (io.EOF at a
// clean end between messages).
func readMessages(r io.Reader, msgs chan<- *proto.ToDataplane, done chan<- error) {
	header := make([]byte, 8)
	for {
		if _, err := io.ReadFull(r, header); err != nil {
			done <- err
			return
		}
		length := binary.LittleEndian.Uint64(header)
		if length > maxMessage {
			done <- fmt.Errorf("message of %d bytes (limit %d)", length, maxMessage)
			return
		}
		data := make([]byte, length)
		if _, err := io.ReadFull(r, data); err != nil {
			done <- fmt.Errorf("message cut short: %w", err)
			return
		}
		msg := &proto.ToDataplane{}
		if err := pb.Unmarshal(data, msg); err != nil {
			done <- fmt.Errorf("bad message: %w", err)
			return
		}
		msgs <- msg
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "felix-dataplane-recorder: "+format+"\n", args...)
	os.Exit(2)
}

func main() {
	path := os.Getenv("FELIX_RECORDER_STATE")
	if path == "" {
		fail("FELIX_RECORDER_STATE (the JSON state file to write) is not set")
	}
	fromFelix := os.NewFile(3, "from-felix")
	// Held open and never written (see the package comment): Felix exits on EOF of this pipe.
	toFelix := os.NewFile(4, "to-felix")
	if fromFelix == nil || toFelix == nil {
		fail("fd 3 and fd 4 must be Felix's pipes")
	}
	defer toFelix.Close()

	rec := newRecorder()
	if err := write(path, rec.snapshot()); err != nil {
		fail("write %s: %v", path, err)
	}
	msgs := make(chan *proto.ToDataplane, 1024)
	done := make(chan error, 1)
	go readMessages(fromFelix, msgs, done)

	dirty := false
	lastWrite := time.Now()
	flush := func() {
		if err := write(path, rec.snapshot()); err != nil {
			fail("write %s: %v", path, err)
		}
		dirty = false
		lastWrite = time.Now()
	}
	for {
		select {
		case msg := <-msgs:
			rec.apply(msg)
			dirty = true
			if len(msgs) == 0 || time.Since(lastWrite) >= flushEvery {
				flush()
			}
		case err := <-done:
			// Everything read before the end is in msgs already.
			for len(msgs) > 0 {
				rec.apply(<-msgs)
				dirty = true
			}
			if dirty {
				flush()
			}
			if errors.Is(err, io.EOF) {
				os.Exit(0)
			}
			fail("reading fd 3: %v", err)
		}
	}
}
