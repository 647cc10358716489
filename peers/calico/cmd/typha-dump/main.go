// typha-dump: one Typha client on Calico's own syncclient (the library Felix, confd and the other
// Typha clients use) that keeps the key → value map its syncer ends with and prints that map, so
// that two Typha servers (Calico's calico-typha, meshsync's Typha front end) can be compared on the
// same datastore by what a real client ends up holding.
//
// The map is what a client of the library sees: the key of each update is
// model.KeyToDefaultPath(update.Key) (the v1 path, e.g. /calico/v1/host/node-1/config/...), its
// value the JSON (encoding/json) of the value the library parsed with model.ParseValue; an update
// without a value deletes the key. Should the key Typha sent on the wire differ from the path of
// the key the library parsed from it, a warning names both on stderr.
//
// Output:
//   - stdout: whenever the status is in-sync and no update has arrived for --settle, the whole
//     map as one JSON line {"status":"in-sync","keys":N,"map":{...}} (keys sorted); with
//     --follow (the default) it keeps following and prints again after each later settle,
//     otherwise it exits 0 after the first.
//   - stderr: status changes, lost connections, the library's warnings and errors.
//
// The callbacks are restart-aware: when the connection is lost the library reconnects, the map is
// cleared (Typha sends a full snapshot on every connection) and the status is wait-for-datastore
// again. Exit status: 2 when the first connection fails, 3 when a lost connection could not be
// re-established, 1 for bad flags.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	log "github.com/sirupsen/logrus"

	"github.com/projectcalico/calico/libcalico-go/lib/backend/api"
	"github.com/projectcalico/calico/libcalico-go/lib/backend/model"
	"github.com/projectcalico/calico/typha/pkg/discovery"
	"github.com/projectcalico/calico/typha/pkg/syncclient"
	"github.com/projectcalico/calico/typha/pkg/syncproto"

	_ "meshsync.test/peers/calico/internal/jsonfix"
)

// maxKeyWarnings bounds the wire-key mismatch warnings printed (a broken server would otherwise
// print one per key).
const maxKeyWarnings = 20

type options struct {
	addr         string
	syncer       string
	caFile       string
	certFile     string
	keyFile      string
	serverCN     string
	serverURISAN string
	settle       time.Duration
	follow       bool
	logLevel     string
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "", "Typha's address, host:port")
	flag.StringVar(&o.syncer, "syncer", "felix", "syncer: felix, bgp, tunnel-ip-allocation or node-status")
	flag.StringVar(&o.caFile, "ca-file", "", "CA that signed Typha's certificate (TLS; as Felix's TyphaCAFile)")
	flag.StringVar(&o.certFile, "cert-file", "", "client certificate (TLS; as Felix's TyphaCertFile)")
	flag.StringVar(&o.keyFile, "key-file", "", "client key (TLS; as Felix's TyphaKeyFile)")
	flag.StringVar(&o.serverCN, "server-cn", "", "Common Name Typha's certificate must have (as Felix's TyphaCN)")
	flag.StringVar(&o.serverURISAN, "server-uri-san", "", "URI SAN Typha's certificate must have (as Felix's TyphaURISAN)")
	flag.DurationVar(&o.settle, "settle", 300*time.Millisecond, "print the map once in sync and quiet for this long")
	flag.BoolVar(&o.follow, "follow", true, "keep following after the first map (false: exit 0 after it)")
	flag.StringVar(&o.logLevel, "log-level", "warning", "level of the Typha client library's log on stderr")
	flag.Parse()
	code, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "typha-dump:", err)
	}
	os.Exit(code)
}

func syncerType(name string) (syncproto.SyncerType, error) {
	for _, t := range []syncproto.SyncerType{
		syncproto.SyncerTypeFelix,
		syncproto.SyncerTypeBGP,
		syncproto.SyncerTypeTunnelIPAllocation,
		syncproto.SyncerTypeNodeStatus,
	} {
		if string(t) == name {
			return t, nil
		}
	}
	return "", fmt.Errorf("unknown --syncer %q (felix, bgp, tunnel-ip-allocation, node-status)", name)
}

// validate checks the flags, including the library's own TLS rule (which it enforces with
// log.Fatal): any TLS flag needs the CA, the certificate, the key and one of the two server names.
func (o *options) validate() (syncproto.SyncerType, error) {
	t, err := syncerType(o.syncer)
	if err != nil {
		return "", err
	}
	if o.addr == "" || !strings.Contains(o.addr, ":") {
		return "", fmt.Errorf("--addr must be host:port, not %q", o.addr)
	}
	if o.settle <= 0 {
		return "", errors.New("--settle must be positive")
	}
	anyTLS := o.caFile+o.certFile+o.keyFile+o.serverCN+o.serverURISAN != ""
	if anyTLS && (o.caFile == "" || o.certFile == "" || o.keyFile == "" || (o.serverCN == "" && o.serverURISAN == "")) {
		return "", errors.New("TLS needs --ca-file, --cert-file, --key-file and --server-cn or --server-uri-san")
	}
	return t, nil
}

// event is one callback of the library, handed to the main loop (which owns the map).
type event struct {
	status    *api.SyncStatus
	updates   []api.Update
	keys      []string
	restarted bool
}

// callbacks forwards the library's callbacks to the main loop. The library calls them from one
// goroutine at a time.
type callbacks struct {
	events chan<- event
}

var _ syncclient.RestartAwareCallbacks = callbacks{}

func (c callbacks) OnStatusUpdated(status api.SyncStatus) {
	c.events <- event{status: &status}
}

func (c callbacks) OnUpdates(updates []api.Update) {
	c.OnUpdatesKeysKnown(updates, make([]string, len(updates)))
}

func (c callbacks) OnUpdatesKeysKnown(updates []api.Update, keys []string) {
	c.events <- event{updates: updates, keys: keys}
}

func (c callbacks) OnTyphaConnectionRestarted() {
	c.events <- event{restarted: true}
}

// dump is the client's state: the map, the status, whether the map changed since it was printed.
type dump struct {
	entries     map[string]json.RawMessage
	status      api.SyncStatus
	dirty       bool
	keyWarnings int
}

func (d *dump) apply(updates []api.Update, wireKeys []string) {
	for i, u := range updates {
		key, err := model.KeyToDefaultPath(u.Key)
		if err != nil {
			key = wireKeys[i]
			d.warnKey("the parsed key has no default path (%v); using the wire key %q", err, key)
		} else if wireKeys[i] != "" && wireKeys[i] != key {
			d.warnKey("Typha sent key %q, which parses to a key whose default path is %q", wireKeys[i], key)
		}
		d.dirty = true
		if u.Value == nil {
			delete(d.entries, key)
			continue
		}
		value, err := json.Marshal(u.Value)
		if err != nil {
			// A JSON string, so the line stays valid and the comparison shows it.
			value, _ = json.Marshal(fmt.Sprintf("<value of %T not encodable as JSON: %v>", u.Value, err))
		}
		d.entries[key] = value
	}
}

func (d *dump) warnKey(format string, args ...any) {
	d.keyWarnings++
	if d.keyWarnings <= maxKeyWarnings {
		fmt.Fprintf(os.Stderr, "typha-dump: warning: "+format+"\n", args...)
	}
}

// line is the map as one JSON line (encoding/json sorts a map's keys).
func (d *dump) line() ([]byte, error) {
	keys := make([]string, 0, len(d.entries))
	for k := range d.entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return json.Marshal(struct {
		Status string                     `json:"status"`
		Keys   int                        `json:"keys"`
		Map    map[string]json.RawMessage `json:"map"`
	}{Status: "in-sync", Keys: len(keys), Map: d.entries})
}

func run(o options) (int, error) {
	t, err := o.validate()
	if err != nil {
		return 1, err
	}
	level, err := log.ParseLevel(o.logLevel)
	if err != nil {
		return 1, fmt.Errorf("bad --log-level: %w", err)
	}
	log.SetOutput(os.Stderr)
	log.SetLevel(level)

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	events := make(chan event, 64)
	hostname, _ := os.Hostname()
	if hostname == "" {
		hostname = "typha-dump"
	}
	client := syncclient.New(
		discovery.New(discovery.WithAddrOverride(o.addr)),
		"typha-dump", hostname, "meshsync typha-dump",
		callbacks{events: events},
		&syncclient.Options{
			SyncerType:   t,
			CAFile:       o.caFile,
			CertFile:     o.certFile,
			KeyFile:      o.keyFile,
			ServerCN:     o.serverCN,
			ServerURISAN: o.serverURISAN,
		},
	)
	if err := client.Start(ctx); err != nil {
		return 2, fmt.Errorf("cannot connect to Typha at %s (syncer %s): %w", o.addr, t, err)
	}
	fmt.Fprintf(os.Stderr, "typha-dump: connected to %s (syncer %s)\n", o.addr, t)
	finished := make(chan struct{})
	go func() {
		client.Finished.Wait()
		close(finished)
	}()

	out := bufio.NewWriter(os.Stdout)
	d := &dump{entries: make(map[string]json.RawMessage), status: api.WaitForDatastore}
	settle := time.NewTimer(o.settle)
	settle.Stop()
	for {
		select {
		case ev := <-events:
			switch {
			case ev.restarted:
				fmt.Fprintf(os.Stderr, "typha-dump: lost the connection to %s; reconnecting (the map starts again)\n", o.addr)
				clear(d.entries)
				d.dirty = true
			case ev.status != nil:
				if *ev.status != d.status {
					fmt.Fprintf(os.Stderr, "typha-dump: status %s\n", *ev.status)
				}
				d.status = *ev.status
				d.dirty = true
			default:
				d.apply(ev.updates, ev.keys)
			}
			if d.status == api.InSync {
				settle.Reset(o.settle)
			} else {
				settle.Stop()
			}
		case <-settle.C:
			if d.status != api.InSync || !d.dirty {
				continue
			}
			line, err := d.line()
			if err != nil {
				return 1, fmt.Errorf("encoding the map: %w", err)
			}
			out.Write(line)
			out.WriteByte('\n')
			if err := out.Flush(); err != nil {
				return 1, fmt.Errorf("writing stdout: %w", err)
			}
			d.dirty = false
			if !o.follow {
				// Straight out: stopping the client first would only log its shutdown.
				os.Exit(0)
			}
		case <-finished:
			if ctx.Err() != nil {
				return 0, nil
			}
			return 3, fmt.Errorf("lost the connection to Typha at %s and could not reconnect", o.addr)
		case <-ctx.Done():
			return 0, nil
		}
	}
}
