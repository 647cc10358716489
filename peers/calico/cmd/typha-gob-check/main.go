// typha-gob-check: Go's side of meshsync's gob tests (crates/meshsync-typha/tests/go_gob.rs), on
// Calico's own typha/pkg/syncproto types with the real encoding/gob and golang/snappy, used the
// way typha/pkg/syncclient uses them.
//
// Modes:
//
//	-decode   reads a server-to-client stream on stdin and decodes it exactly as the syncclient
//	          does: gob.NewDecoder on the raw stream, Decode(&syncproto.Envelope{}) per message;
//	          on a MsgDecoderRestart, a new gob decoder on snappy.NewReader(stdin) (algorithm
//	          "snappy") or on stdin again (""). Prints each message as one JSON line (see
//	          describe) as soon as it is decoded — the line of a MsgDecoderRestart plays the
//	          client's ACK: the writer must send nothing more until it has read that line, as a
//	          Typha server waits for the ACK. Exit 0 at a clean end of stream; on a decoding
//	          error prints {"error": "..."} and exits 1.
//	-encode V writes a client-to-server stream to stdout with one gob encoder, as the syncclient
//	          does (Encode(syncproto.Envelope{Message: m})): a MsgClientHello with every field set,
//	          a MsgACK, MsgPongs with various timestamps. V is "v3.31" (syncproto's own
//	          MsgClientHello) or "v3.32" (the same plus SupportsModernPolicyKeys, as v3.32's client
//	          sends it). -expect FILE receives one JSON line per message, in -decode's format.
package main

import (
	"bufio"
	"bytes"
	"encoding/gob"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/golang/snappy"
	"github.com/projectcalico/calico/typha/pkg/syncproto"
)

func main() {
	decode := flag.Bool("decode", false, "decode a server-to-client stream from stdin")
	encode := flag.String("encode", "", "write a client-to-server stream (v3.31 or v3.32) to stdout")
	expect := flag.String("expect", "", "with -encode: write the messages' JSON lines to this file")
	flag.Parse()
	switch {
	case *decode:
		os.Exit(decodeStream())
	case *encode != "":
		if err := encodeStream(*encode, *expect); err != nil {
			fmt.Fprintln(os.Stderr, "typha-gob-check:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "typha-gob-check: -decode or -encode VERSION")
		os.Exit(2)
	}
}

func decodeStream() int {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	emit := func(v any) {
		line, err := json.Marshal(v)
		if err != nil {
			line, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
		out.Write(line)
		out.WriteByte('\n')
		out.Flush()
	}
	// As the syncclient: the first decoder reads the raw connection (gob adds its own bufio).
	var conn io.Reader = os.Stdin
	decoder := gob.NewDecoder(conn)
	for {
		var envelope syncproto.Envelope
		err := decoder.Decode(&envelope)
		if err == io.EOF {
			return 0
		}
		if err != nil {
			emit(map[string]string{"error": err.Error()})
			return 1
		}
		emit(describe(envelope.Message))
		if restart, ok := envelope.Message.(syncproto.MsgDecoderRestart); ok {
			switch restart.CompressionAlgorithm {
			case syncproto.CompressionSnappy:
				decoder = gob.NewDecoder(snappy.NewReader(conn))
			case "":
				decoder = gob.NewDecoder(conn)
			}
		}
	}
}

// describe is a message as JSON: {"type": <the Go type>, ...its fields}. Byte slices are hex
// (null when nil), interfaces {"type": %T, "value": %v} (null when nil), times describeTime.
func describe(msg any) map[string]any {
	d := map[string]any{"type": fmt.Sprintf("%T", msg)}
	if msg == nil {
		return d
	}
	v := reflect.ValueOf(msg)
	if v.Kind() != reflect.Struct {
		d["value"] = fmt.Sprint(msg)
		return d
	}
	for i := 0; i < v.NumField(); i++ {
		d[v.Type().Field(i).Name] = describeValue(v.Field(i))
	}
	return d
}

func describeValue(v reflect.Value) any {
	if t, ok := v.Interface().(time.Time); ok {
		return describeTime(t)
	}
	switch v.Kind() {
	case reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return map[string]any{"type": fmt.Sprintf("%T", v.Interface()), "value": fmt.Sprint(v.Interface())}
	case reflect.Slice:
		if v.IsNil() {
			return nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return hex.EncodeToString(v.Bytes())
		}
		list := make([]any, v.Len())
		for i := range list {
			e := v.Index(i)
			if e.Kind() == reflect.Struct {
				list[i] = describe(e.Interface())
			} else {
				list[i] = describeValue(e)
			}
		}
		return list
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return v.Bool()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int()
	default:
		return fmt.Sprint(v.Interface())
	}
}

// describeTime: null for the zero time, else the instant and the zone as Go holds them.
func describeTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	_, offset := t.Zone()
	return map[string]any{
		"unix":   t.Unix(),
		"nanos":  t.Nanosecond(),
		"utc":    t.Location() == time.UTC,
		"offset": offset,
	}
}

// MsgClientHello as Calico v3.32 declares it: v3.31's fields plus SupportsModernPolicyKeys.
// gob allows one type per registered name per process, so it is registered under a placeholder
// of the same length, replaced in the output by the real name.
type MsgClientHello struct {
	Hostname                       string
	Info                           string
	Version                        string
	SyncerType                     syncproto.SyncerType
	SupportsDecoderRestart         bool
	SupportedCompressionAlgorithms []syncproto.CompressionAlgorithm
	ClientConnID                   uint64
	SupportsModernPolicyKeys       bool
}

const (
	helloName        = "github.com/projectcalico/typha/pkg/syncproto.MsgClientHello"
	helloPlaceholder = "github.com/projectcalico/typha/pkg/syncproto.V332ClientHell"
)

func encodeStream(version, expectPath string) error {
	algorithms := []syncproto.CompressionAlgorithm{syncproto.CompressionSnappy, "zstd-later", "ünïcödé"}
	var hello any
	switch version {
	case "v3.31":
		hello = syncproto.MsgClientHello{
			Hostname:                       "node-1.example.com",
			Info:                           "Revision: 1234abcd; Build date: 2025-10-21",
			Version:                        "v3.31.0",
			SyncerType:                     syncproto.SyncerTypeFelix,
			SupportsDecoderRestart:         true,
			SupportedCompressionAlgorithms: algorithms,
			ClientConnID:                   0x1234_5678_9abc_def0,
		}
	case "v3.32":
		if len(helloName) != len(helloPlaceholder) {
			return fmt.Errorf("placeholder name has the wrong length")
		}
		gob.RegisterName(helloPlaceholder, MsgClientHello{})
		hello = MsgClientHello{
			Hostname:                       "nœud-2",
			Info:                           "Revision: v3.32; Build date: 2026-01-01",
			Version:                        "v3.32.1",
			SyncerType:                     syncproto.SyncerTypeBGP,
			SupportsDecoderRestart:         true,
			SupportedCompressionAlgorithms: algorithms[:1],
			ClientConnID:                   7,
			SupportsModernPolicyKeys:       true,
		}
	default:
		return fmt.Errorf("unknown version %q (v3.31 or v3.32)", version)
	}
	ping := time.Date(2026, 12, 4, 23, 59, 58, 123456789, time.UTC)
	messages := []any{
		hello,
		syncproto.MsgACK{},
		// What the syncclient sends: the ping's timestamp echoed, no pong timestamp.
		syncproto.MsgPong{PingTimestamp: ping},
		syncproto.MsgPong{
			PingTimestamp: time.Date(1969, 7, 20, 20, 17, 40, 5, time.FixedZone("", 5*3600+30*60)),
			PongTimestamp: time.Date(1901, 1, 1, 0, 0, 0, 999999999, time.FixedZone("LMT", 3600+45)),
		},
		syncproto.MsgPong{},
		syncproto.MsgACK{},
	}
	var stream bytes.Buffer
	encoder := gob.NewEncoder(&stream)
	var expected []byte
	for _, m := range messages {
		if err := encoder.Encode(syncproto.Envelope{Message: m}); err != nil {
			return err
		}
		d := describe(m)
		if _, ok := m.(MsgClientHello); ok {
			d["type"] = "syncproto.MsgClientHello"
		}
		line, err := json.Marshal(d)
		if err != nil {
			return err
		}
		expected = append(append(expected, line...), '\n')
	}
	wire := stream.Bytes()
	if version == "v3.32" {
		wire = []byte(strings.ReplaceAll(string(wire), helloPlaceholder, helloName))
	}
	if expectPath != "" {
		if err := os.WriteFile(expectPath, expected, 0o644); err != nil {
			return err
		}
	}
	_, err := os.Stdout.Write(wire)
	return err
}
