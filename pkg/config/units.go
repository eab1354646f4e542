package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

var durationUnits = map[string]time.Duration{
	"ns": time.Nanosecond, "nano": time.Nanosecond, "nanos": time.Nanosecond, "nanosecond": time.Nanosecond, "nanoseconds": time.Nanosecond,
	"us": time.Microsecond, "µs": time.Microsecond, "micro": time.Microsecond, "micros": time.Microsecond, "microsecond": time.Microsecond, "microseconds": time.Microsecond,
	"": time.Millisecond, "ms": time.Millisecond, "milli": time.Millisecond, "millis": time.Millisecond, "millisecond": time.Millisecond, "milliseconds": time.Millisecond,
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
}

// splitNumber splits "300 s" / "10s" / "1.5h" into the number and the unit.
func splitNumber(s string) (num, unit string) {
	s = strings.TrimSpace(s)
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// ParseDuration parses a HOCON duration: a number with an optional unit
// (ns, us, ms, s, m, h, d and their long forms such as "seconds"), with or
// without a blank before the unit. A bare number is milliseconds, as in
// HOCON. Go forms such as "1m30s" are accepted too.
func ParseDuration(s string) (time.Duration, error) {
	num, unit := splitNumber(s)
	if mult, ok := durationUnits[strings.ToLower(unit)]; ok && num != "" && num != "-" && num != "+" {
		f, err := strconv.ParseFloat(num, 64)
		if err == nil {
			d := f * float64(mult)
			if math.Abs(d) > math.MaxInt64 {
				return 0, fmt.Errorf("duration %q is too large", s)
			}
			return time.Duration(d), nil
		}
	}
	if d, err := time.ParseDuration(strings.ReplaceAll(strings.TrimSpace(s), " ", "")); err == nil {
		return d, nil
	}
	return 0, fmt.Errorf("%q is not a duration (want e.g. 10s, 500ms, \"300 s\", \"10 seconds\", 2m, 1h; a bare number is milliseconds)", s)
}

// FormatDuration renders d in the shortest exact unit: 6s, 250ms, 1h.
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	case d%time.Millisecond == 0:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	case d%time.Microsecond == 0:
		return fmt.Sprintf("%dus", d/time.Microsecond)
	}
	return fmt.Sprintf("%dns", int64(d))
}

const (
	kib = 1 << 10
	mib = 1 << 20
	gib = 1 << 30
	tib = 1 << 40
)

// Size units follow HOCON: single letters and the "i" forms are powers of
// 1024; kB/MB/GB/TB (SI) are powers of 1000.
var sizeUnits = map[string]int64{
	"": 1, "b": 1, "byte": 1, "bytes": 1,
	"k": kib, "ki": kib, "kib": kib, "kibibyte": kib, "kibibytes": kib,
	"kb": 1e3, "kilobyte": 1e3, "kilobytes": 1e3,
	"m": mib, "mi": mib, "mib": mib, "mebibyte": mib, "mebibytes": mib,
	"mb": 1e6, "megabyte": 1e6, "megabytes": 1e6,
	"g": gib, "gi": gib, "gib": gib, "gibibyte": gib, "gibibytes": gib,
	"gb": 1e9, "gigabyte": 1e9, "gigabytes": 1e9,
	"t": tib, "ti": tib, "tib": tib, "tebibyte": tib, "tebibytes": tib,
	"tb": 1e12, "terabyte": 1e12, "terabytes": 1e12,
}

// ParseSize parses a HOCON size: 1024, 512MB, "4 GB", 1g, 64KiB.
// K/M/G/T, Ki/Mi/Gi/Ti and KiB/MiB/GiB/TiB are powers of 1024; kB/MB/GB/TB
// are powers of 1000 (the HOCON rule). Unit letters are case-insensitive
// except that "b" alone means bytes.
func ParseSize(s string) (int64, error) {
	num, unit := splitNumber(s)
	mult, ok := sizeUnits[strings.ToLower(unit)]
	if ok && num != "" && !strings.HasPrefix(num, "-") {
		f, err := strconv.ParseFloat(num, 64)
		if err == nil && f*float64(mult) < math.MaxInt64 {
			return int64(f * float64(mult)), nil
		}
	}
	return 0, fmt.Errorf("%q is not a size (want e.g. 1024, 64KiB, 512MB, 4GB, 1g; K/M/G/Ki/MiB are powers of 1024, kB/MB/GB of 1000)", s)
}

// FormatSize renders n with the largest exact binary unit (4GiB, 10MiB) or
// SI unit (4GB), else bytes.
func FormatSize(n int64) string {
	for _, u := range []struct {
		v    int64
		name string
	}{{tib, "TiB"}, {1e12, "TB"}, {gib, "GiB"}, {1e9, "GB"}, {mib, "MiB"}, {1e6, "MB"}, {kib, "KiB"}, {1e3, "kB"}} {
		if n != 0 && n%u.v == 0 {
			return fmt.Sprintf("%d%s", n/u.v, u.name)
		}
	}
	return strconv.FormatInt(n, 10)
}
