// typha-bench-agents: N Typha clients in one process for meshsync-bench's `typha` system, each on
// its own connection through Calico's own syncclient (felix syncer), each applying the updates it
// receives to its own map, as Felix does.
//
// It speaks the line protocol of `meshsync-bench agents` (crates/meshsync-bench/src/agents/mod.rs),
// so the orchestrator drives every system the same way:
//   - stdout: one JSON object per line: `progress` every 250 ms, `synced` once every client has
//     synced or failed, `report` in answer to `report`, `error` on fatal problems;
//   - stdin, one command per line: `reset <generation>` (count only updates stamped with that
//     generation from now on, clear the histograms, answered at once by a `progress` line with
//     `received: 0`), `report`, `quit`. EOF on stdin is `quit`.
//
// A client is synced when Typha has said in-sync on its connection and it holds every benchmark
// WorkloadEndpoint. Snapshot data (the first sync and the resync after a reconnect, which Typha
// always sends in full) is applied but never counted: only updates received after the in-sync
// status of the current connection are deliveries. Typha converts the v3 WorkloadEndpoints to
// Felix's v1 model, which keeps the labels, so the write stamp is read from the `bench-stamp`
// label ("<generation>.<write time ns>").
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	log "github.com/sirupsen/logrus"

	"github.com/projectcalico/calico/libcalico-go/lib/backend/api"
	"github.com/projectcalico/calico/libcalico-go/lib/backend/model"
	"github.com/projectcalico/calico/typha/pkg/discovery"
	"github.com/projectcalico/calico/typha/pkg/syncclient"
	"github.com/projectcalico/calico/typha/pkg/syncproto"
)

// stampLabel is the label workload::value puts on every benchmark WorkloadEndpoint.
const stampLabel = "bench-stamp"

type options struct {
	target      string
	n           int
	keys        int
	concurrency int
	attempts    int
}

func main() {
	var o options
	flag.StringVar(&o.target, "target", "", "Typha's address, host:port (an http:// prefix is ignored)")
	flag.IntVar(&o.n, "n", 0, "number of clients, each with its own connection")
	flag.IntVar(&o.keys, "keys", 0, "benchmark WorkloadEndpoints a client must hold to call itself in sync")
	flag.IntVar(&o.concurrency, "connect-concurrency", 0, "clients connecting and syncing at the same time (0: all at once)")
	flag.IntVar(&o.attempts, "attempts", 5, "connection attempts before a client that never synced counts as failed")
	logLevel := flag.String("log-level", "warning", "level of the Typha client library's log on stderr")
	flag.Parse()
	if err := run(o, *logLevel); err != nil {
		emit(message{Type: "error", Message: err.Error()})
		fmt.Fprintln(os.Stderr, "typha-bench-agents:", err)
		os.Exit(1)
	}
}

func run(o options, logLevel string) error {
	level, err := log.ParseLevel(logLevel)
	if err != nil {
		return fmt.Errorf("bad --log-level: %w", err)
	}
	// The library logs through logrus's standard logger; stdout carries the protocol only.
	log.SetOutput(os.Stderr)
	log.SetLevel(level)
	o.target = strings.TrimPrefix(strings.TrimPrefix(o.target, "http://"), "tcp://")
	if o.target == "" || !strings.Contains(o.target, ":") {
		return fmt.Errorf("--target must be host:port, not %q", o.target)
	}
	if o.n < 0 || o.keys < 0 {
		return fmt.Errorf("--n and --keys must not be negative")
	}
	if o.attempts < 1 {
		o.attempts = 1
	}
	// To see where the clients' CPU goes: MESHSYNC_BENCH_CPUPROFILE=FILE profiles from the start
	// to the first `report` (the end of the first measured step; the orchestrator kills us soon
	// after `quit`), for go tool pprof.
	stopProfile := func() {}
	if path := os.Getenv("MESHSYNC_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("creating the CPU profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			_ = f.Close()
			return fmt.Errorf("starting the CPU profile: %w", err)
		}
		var once sync.Once
		stopProfile = func() {
			once.Do(func() {
				pprof.StopCPUProfile()
				_ = f.Close()
			})
		}
		defer stopProfile()
	}

	rec := newRecorder(o.n)
	commands := make(chan string)
	go readCommands(os.Stdin, commands)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	startClients(ctx, o, rec)

	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	allDone := rec.allDone
	if o.n == 0 {
		close(rec.allDone)
	}
	reconnectsSeen := int64(0)
	for {
		select {
		case <-ticker.C:
			emit(rec.progress())
			if r := rec.reconnects.Load(); r != reconnectsSeen {
				log.WithField("reconnects", r).Warn("synced clients reconnected (their resync is not counted)")
				reconnectsSeen = r
			}
		case <-allDone:
			allDone = nil
			emit(message{Type: "synced", PerAgentS: rec.syncTimes(), Failed: rec.failed.Load()})
		case line, ok := <-commands:
			if !ok {
				return nil
			}
			if line == "report" {
				// Before the answer: the orchestrator may kill us soon after it.
				stopProfile()
			}
			if !handleCommand(line, rec) {
				return nil
			}
		}
	}
}

// handleCommand runs one stdin command; false means quit.
func handleCommand(line string, rec *recorder) bool {
	words := strings.Fields(line)
	switch {
	case len(words) == 0:
	case words[0] == "reset" && len(words) == 2:
		g, err := strconv.ParseUint(words[1], 10, 64)
		if err != nil || g == noGeneration {
			log.Warnf("bad generation in %q", line)
			break
		}
		rec.reset(g)
		// Acknowledges the reset: every later line counts generation g only.
		emit(rec.progress())
	case words[0] == "report" && len(words) == 1:
		h := rec.merged()
		l := h.summarize()
		emit(message{Type: "report", Received: h.total, Latency: &l})
	case words[0] == "quit" && len(words) == 1:
		return false
	default:
		log.Warnf("unknown command %q", line)
	}
	return true
}

func readCommands(r io.Reader, out chan<- string) {
	defer close(out)
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		out <- line
		if line == "quit" {
			return
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Protocol messages
// ---------------------------------------------------------------------------------------------

// message is one stdout line: the JSON of the Rust `AgentsMessage` (tag "type").
type message struct {
	Type string `json:"type"`
	// progress
	Synced *int64 `json:"synced,omitempty"`
	// progress and synced
	Failed int64 `json:"failed"`
	// progress and report
	Received uint64 `json:"received"`
	// synced
	PerAgentS []float64 `json:"per_agent_s,omitempty"`
	// report
	Latency *latency `json:"latency,omitempty"`
	// error
	Message string `json:"message,omitempty"`
}

// MarshalJSON writes only the fields of the message's type.
func (m message) MarshalJSON() ([]byte, error) {
	switch m.Type {
	case "progress":
		synced := int64(0)
		if m.Synced != nil {
			synced = *m.Synced
		}
		return json.Marshal(struct {
			Type     string `json:"type"`
			Synced   int64  `json:"synced"`
			Failed   int64  `json:"failed"`
			Received uint64 `json:"received"`
		}{m.Type, synced, m.Failed, m.Received})
	case "synced":
		perAgent := m.PerAgentS
		if perAgent == nil {
			perAgent = []float64{}
		}
		return json.Marshal(struct {
			Type      string    `json:"type"`
			PerAgentS []float64 `json:"per_agent_s"`
			Failed    int64     `json:"failed"`
		}{m.Type, perAgent, m.Failed})
	case "report":
		l := latency{Cdf: []cdfPoint{}}
		if m.Latency != nil {
			l = *m.Latency
		}
		return json.Marshal(struct {
			Type     string  `json:"type"`
			Received uint64  `json:"received"`
			Latency  latency `json:"latency"`
		}{m.Type, m.Received, l})
	default:
		return json.Marshal(struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		}{m.Type, m.Message})
	}
}

func (p cdfPoint) MarshalJSON() ([]byte, error) {
	return json.Marshal([]any{p.us, p.fraction})
}

var stdout = struct {
	sync.Mutex
	w *bufio.Writer
}{w: bufio.NewWriter(os.Stdout)}

// emit prints one message on stdout, flushed. A closed stdout means the orchestrator is gone;
// stdin's EOF will end us.
func emit(m message) {
	line, err := json.Marshal(m)
	if err != nil {
		log.WithError(err).Error("cannot encode a message")
		return
	}
	stdout.Lock()
	defer stdout.Unlock()
	_, _ = stdout.w.Write(append(line, '\n'))
	_ = stdout.w.Flush()
}

// ---------------------------------------------------------------------------------------------
// The recorder: what every client records into
// ---------------------------------------------------------------------------------------------

// noGeneration means "no reset yet": nothing is counted.
const noGeneration = ^uint64(0)

// shards of latency histograms; client i records into shard i % shards, so clients rarely share
// a lock.
const shards = 64

type shard struct {
	sync.Mutex
	h histogram
}

type recorder struct {
	// The generation counted; read under a shard lock so reset cannot race a recording.
	generation atomic.Uint64
	shards     [shards]shard
	synced     atomic.Int64
	failed     atomic.Int64
	// Clients synced or failed (one counter, so exactly one client sees the last one).
	finished   atomic.Int64
	reconnects atomic.Int64
	logged     atomic.Int64
	n          int
	start      time.Time
	allDone    chan struct{}

	mu    sync.Mutex
	times []float64
}

// Failures logged to stderr (the rest are only counted).
const loggedFailures = 5

func newRecorder(n int) *recorder {
	r := &recorder{n: n, start: time.Now(), allDone: make(chan struct{}), times: make([]float64, 0, n)}
	r.generation.Store(noGeneration)
	return r
}

// record counts the latency of every benchmark WorkloadEndpoint stamped with the current
// generation, received at now (ns). One lock per call: callers pass a whole batch.
func (r *recorder) record(client int, now int64, updates []api.Update) {
	if r.generation.Load() == noGeneration {
		return
	}
	s := &r.shards[client%shards]
	s.Lock()
	defer s.Unlock()
	generation := r.generation.Load()
	for i := range updates {
		wep, ok := updates[i].Value.(*model.WorkloadEndpoint)
		if !ok {
			continue
		}
		stamp, ok := wep.Labels.GetString(stampLabel)
		if !ok {
			continue
		}
		g, ts, ok := parseStamp(stamp)
		if !ok || g != generation {
			continue
		}
		us := uint64(0)
		if now > ts {
			us = uint64(now-ts) / 1000
		}
		s.h.record(us)
	}
}

// parseStamp reads "<generation>.<write time ns>".
func parseStamp(s string) (generation uint64, ts int64, ok bool) {
	g, t, found := strings.Cut(s, ".")
	if !found {
		return 0, 0, false
	}
	generation, err := strconv.ParseUint(g, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	ts, err = strconv.ParseInt(t, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return generation, ts, true
}

func (r *recorder) reset(generation uint64) {
	r.generation.Store(generation)
	for i := range r.shards {
		s := &r.shards[i]
		s.Lock()
		s.h.reset()
		s.Unlock()
	}
}

func (r *recorder) merged() *histogram {
	total := &histogram{}
	for i := range r.shards {
		s := &r.shards[i]
		s.Lock()
		total.add(&s.h)
		s.Unlock()
	}
	return total
}

func (r *recorder) received() uint64 {
	var n uint64
	for i := range r.shards {
		s := &r.shards[i]
		s.Lock()
		n += s.h.total
		s.Unlock()
	}
	return n
}

func (r *recorder) progress() message {
	synced := r.synced.Load()
	return message{Type: "progress", Synced: &synced, Failed: r.failed.Load(), Received: r.received()}
}

func (r *recorder) syncTimes() []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]float64(nil), r.times...)
	sort.Float64s(out)
	return out
}

func (r *recorder) markSynced() {
	t := time.Since(r.start).Seconds()
	r.mu.Lock()
	r.times = append(r.times, t)
	r.mu.Unlock()
	r.synced.Add(1)
	r.finishedOne()
}

func (r *recorder) markFailed(client int, err string) {
	if r.logged.Add(1) <= loggedFailures {
		log.WithField("client", client).Warnf("client failed: %s", err)
	}
	r.failed.Add(1)
	r.finishedOne()
}

func (r *recorder) finishedOne() {
	if r.finished.Add(1) == int64(r.n) {
		close(r.allDone)
	}
}

// ---------------------------------------------------------------------------------------------
// The clients
// ---------------------------------------------------------------------------------------------

// client is one Typha connection's callbacks and the state that survives its reconnections. The
// syncclient calls the callbacks from one goroutine at a time (the connection's loop, or the
// restart goroutine once that loop has ended), so the state needs no lock.
type client struct {
	id   int
	o    *options
	rec  *recorder
	stop context.CancelFunc
	// The client's copy: Typha key (the v1 default path) → decoded value, as Felix keeps it.
	entries map[string]any
	// Benchmark WorkloadEndpoints among the entries.
	weps int
	// Past the in-sync status of the current connection: updates are deliveries.
	live   bool
	synced bool
	done   bool
	// Connections lost before the first sync.
	failures int
	slot     func()
}

var _ syncclient.RestartAwareCallbacks = (*client)(nil)

func (c *client) OnStatusUpdated(status api.SyncStatus) {
	if c.done {
		return
	}
	c.live = status == api.InSync
	c.checkSynced()
}

func (c *client) OnUpdates(updates []api.Update) {
	keys := make([]string, len(updates))
	for i := range updates {
		if path, err := model.KeyToDefaultPath(updates[i].Key); err == nil {
			keys[i] = path
		}
	}
	c.OnUpdatesKeysKnown(updates, keys)
}

func (c *client) OnUpdatesKeysKnown(updates []api.Update, keys []string) {
	if c.done {
		return
	}
	if c.live {
		c.rec.record(c.id, time.Now().UnixNano(), updates)
	}
	for i := range updates {
		key := keys[i]
		_, isWep := updates[i].Key.(model.WorkloadEndpointKey)
		_, had := c.entries[key]
		if updates[i].Value == nil {
			if had {
				delete(c.entries, key)
				if isWep {
					c.weps--
				}
			}
			continue
		}
		if !had && isWep {
			c.weps++
		}
		c.entries[key] = updates[i].Value
	}
	c.checkSynced()
}

// OnTyphaConnectionRestarted: the connection was lost and the library reconnects; Typha sends a
// full snapshot again, which is not counted.
func (c *client) OnTyphaConnectionRestarted() {
	if c.done {
		return
	}
	c.live = false
	clear(c.entries)
	c.weps = 0
	if c.synced {
		c.rec.reconnects.Add(1)
		return
	}
	c.failures++
	if c.failures >= c.o.attempts {
		c.fail(fmt.Sprintf("lost the connection %d times before the first sync", c.failures))
	}
}

func (c *client) checkSynced() {
	if c.synced || !c.live || c.weps < c.o.keys {
		return
	}
	c.synced = true
	c.releaseSlot()
	c.rec.markSynced()
}

func (c *client) fail(err string) {
	if c.done || c.synced {
		return
	}
	c.done = true
	c.releaseSlot()
	c.rec.markFailed(c.id, err)
	c.stop()
}

func (c *client) releaseSlot() {
	if c.slot != nil {
		c.slot()
		c.slot = nil
	}
}

func startClients(ctx context.Context, o options, rec *recorder) {
	var slots chan struct{}
	if o.concurrency > 0 {
		slots = make(chan struct{}, o.concurrency)
	}
	log.WithFields(log.Fields{"n": o.n, "target": o.target}).Info("starting Typha clients")
	for id := 0; id < o.n; id++ {
		go runClient(ctx, id, &o, rec, slots)
	}
}

// runClient connects one client (retrying a failed connect with a growing, jittered delay) and,
// should the library give up reconnecting, connects it again: a synced client stays connected for
// as long as the process runs.
func runClient(ctx context.Context, id int, o *options, rec *recorder, slots chan struct{}) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &client{id: id, o: o, rec: rec, stop: cancel, entries: make(map[string]any, o.keys+16)}
	if slots != nil {
		select {
		case slots <- struct{}{}:
			c.slot = func() { <-slots }
		case <-ctx.Done():
			return
		}
	}
	discoverer := discovery.New(discovery.WithAddrOverride(o.target))
	hostname := fmt.Sprintf("bench-agent-%d", id)
	startFailures := 0
	for attempt := 0; ctx.Err() == nil; attempt++ {
		sc := syncclient.New(discoverer, "meshsync-bench", hostname, "meshsync-bench Typha client", c,
			&syncclient.Options{SyncerType: syncproto.SyncerTypeFelix})
		err := sc.Start(ctx)
		if err == nil {
			sc.Finished.Wait()
			if ctx.Err() != nil {
				return
			}
			err = fmt.Errorf("the Typha client library stopped reconnecting")
		}
		// Start and the callbacks do not overlap: the library's goroutines have ended.
		if !c.synced && !c.done {
			startFailures++
			if startFailures >= o.attempts {
				c.fail(err.Error())
				return
			}
		}
		time.Sleep(backoff(attempt))
	}
}

// backoff is 50 ms doubling to 2 s, × 0.5..1.
func backoff(attempt int) time.Duration {
	d := 50 * time.Millisecond << min(attempt, 6)
	d = min(d, 2*time.Second)
	return time.Duration(float64(d) * (0.5 + rand.Float64()/2))
}
