// Package jsonfix makes Calico's JSON encoding of labels work when Calico is built with Go 1.26
// or newer. Import it for its side effect, before anything encodes.
//
// Calico serializes its model with json-iterator, which relies on reflect2 v1.0.2 (the newest
// release) to know how a value of each type sits inside an interface. Go 1.26 stores every type
// whose size is one pointer and which holds one pointer directly in the interface word, including
// structs with zero-size fields beside the pointer; reflect2 still says that only structs with a
// single field are. uniquelabels.Map is such a struct (`_ [0]func()` and a map), so json-iterator
// hands Map.MarshalJSON a pointer where the map should be, and Typha panics ("makeslice: len out
// of range") on the first labelled resource it caches, a WorkloadEndpoint for instance.
//
// The encoder registered here calls the same Map.MarshalJSON on the value the pointer points to:
// the bytes, and the work, of a build with the Go version Calico names (1.24). Decoding needs
// nothing: json-iterator decodes through *Map, a plain pointer. Map is the only such type in the
// model Typha serves (no other struct there has a zero-size field).
package jsonfix

import (
	"unsafe"

	jsoniter "github.com/json-iterator/go"

	"github.com/projectcalico/calico/lib/std/uniquelabels"
)

func init() {
	jsoniter.RegisterTypeEncoderFunc("uniquelabels.Map", encodeMap, func(unsafe.Pointer) bool {
		// json-iterator's own rule for a struct type under omitempty: never empty.
		return false
	})
}

func encodeMap(ptr unsafe.Pointer, stream *jsoniter.Stream) {
	bytes, err := (*uniquelabels.Map)(ptr).MarshalJSON()
	if err != nil {
		stream.Error = err
		return
	}
	stream.Write(bytes)
}
