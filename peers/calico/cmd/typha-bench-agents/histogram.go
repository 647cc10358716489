package main

import (
	"math"
	"math/bits"
)

// A latency histogram with three significant digits, in microseconds from 0 to maxLatencyUs, the
// same resolution and bounds as the Rust agents' (hdrhistogram with sigfigs 3): values below 2048
// are counted exactly; above, each power of two is split into 1024 equal sub-buckets.
const (
	subBuckets   = 2048
	halfBuckets  = subBuckets / 2
	maxLatencyUs = 3_600_000_000
	// maxLatencyUs < 2^32, so the highest bucket is 32 - 11 = 21.
	histogramLen = (21 + 2) * halfBuckets
	// Points of the CDF in a report (as the Rust agents).
	cdfPoints = 100
)

type histogram struct {
	counts [histogramLen]uint64
	total  uint64
	// Lowest and highest value recorded (valid when total > 0).
	min, max uint64
}

// index is the slot of value v (v ≤ maxLatencyUs).
func index(v uint64) int {
	bucket := 63 - bits.LeadingZeros64(v|(subBuckets-1)) - 10
	sub := v >> uint(bucket)
	return (bucket+1)*halfBuckets + int(sub) - halfBuckets
}

// lowest is the smallest value counted in slot i; highest the largest.
func lowest(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	bucket := i/halfBuckets - 1
	sub := uint64(i%halfBuckets + halfBuckets)
	return sub << uint(bucket)
}

func highest(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	bucket := i/halfBuckets - 1
	return lowest(i) + (uint64(1) << uint(bucket)) - 1
}

// record counts one value, clamped to the histogram's range.
func (h *histogram) record(v uint64) {
	if v > maxLatencyUs {
		v = maxLatencyUs
	}
	h.counts[index(v)]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if h.total == 0 || v > h.max {
		h.max = v
	}
	h.total++
}

func (h *histogram) reset() {
	clear(h.counts[:])
	h.total, h.min, h.max = 0, 0, 0
}

func (h *histogram) add(other *histogram) {
	if other.total == 0 {
		return
	}
	for i, c := range other.counts {
		h.counts[i] += c
	}
	if h.total == 0 || other.min < h.min {
		h.min = other.min
	}
	if h.total == 0 || other.max > h.max {
		h.max = other.max
	}
	h.total += other.total
}

// valueAtQuantile is the highest value of the slot where the cumulative count reaches q × total.
func (h *histogram) valueAtQuantile(q float64) uint64 {
	if h.total == 0 {
		return 0
	}
	q = math.Min(math.Max(q, 0), 1)
	want := uint64(math.Ceil(q * float64(h.total)))
	if want == 0 {
		want = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= want {
			return min(highest(i), highest(index(h.max)))
		}
	}
	return highest(index(h.max))
}

// fractionAtOrBelow is the share of values in slots up to v's.
func (h *histogram) fractionAtOrBelow(v uint64) float64 {
	if h.total == 0 {
		return 0
	}
	if v > maxLatencyUs {
		v = maxLatencyUs
	}
	last := index(v)
	var seen uint64
	for i := 0; i <= last; i++ {
		seen += h.counts[i]
	}
	return float64(seen) / float64(h.total)
}

// cdfPoint is one point of a CDF: latency µs and the fraction of deliveries at or below it. It is
// written as a JSON pair, as the Rust `(u64, f64)`.
type cdfPoint struct {
	us       uint64
	fraction float64
}

// latency is the report's latency summary: the fields of the Rust `Latency`.
type latency struct {
	Count  uint64     `json:"count"`
	P50Us  uint64     `json:"p50_us"`
	P90Us  uint64     `json:"p90_us"`
	P99Us  uint64     `json:"p99_us"`
	P999Us uint64     `json:"p999_us"`
	MaxUs  uint64     `json:"max_us"`
	Cdf    []cdfPoint `json:"cdf"`
}

// summarize gives the percentiles and cdfPoints log-spaced CDF points between the lowest and the
// highest value recorded (the same summary the Rust agents make).
func (h *histogram) summarize() latency {
	if h.total == 0 {
		return latency{Cdf: []cdfPoint{}}
	}
	lo := max(lowest(index(h.min)), 1)
	hi := max(highest(index(h.max)), lo)
	ratio := float64(hi) / float64(lo)
	cdf := make([]cdfPoint, 0, cdfPoints)
	for i := 0; i < cdfPoints; i++ {
		x := float64(lo) * math.Pow(ratio, float64(i)/float64(cdfPoints-1))
		v := min(max(uint64(math.Round(x)), lo), hi)
		if n := len(cdf); n > 0 && cdf[n-1].us >= v {
			continue
		}
		cdf = append(cdf, cdfPoint{us: v, fraction: math.Min(h.fractionAtOrBelow(v), 1)})
	}
	if n := len(cdf); n > 0 {
		cdf[n-1].fraction = 1
	}
	return latency{
		Count:  h.total,
		P50Us:  h.valueAtQuantile(0.50),
		P90Us:  h.valueAtQuantile(0.90),
		P99Us:  h.valueAtQuantile(0.99),
		P999Us: h.valueAtQuantile(0.999),
		MaxUs:  highest(index(h.max)),
		Cdf:    cdf,
	}
}
