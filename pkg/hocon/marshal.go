package hocon

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Parser adapts the package to koanf's Parser interface:
// koanf.Load(provider, hocon.Parser{}). Unmarshal resolves includes relative
// to the current directory and substitutions against the process
// environment; use ParseWith for control over both. Note that koanf splits
// keys on its delimiter, so a quoted key such as "a.b.C" becomes nested
// levels inside koanf; use Document for exact keys and positions.
type Parser struct{}

// Unmarshal parses HOCON bytes into a nested map.
func (Parser) Unmarshal(b []byte) (map[string]any, error) {
	d, err := Parse(b, "")
	if err != nil {
		return nil, err
	}
	return d.Map(), nil
}

// Marshal renders a nested map as HOCON that Unmarshal reads back to an
// equal map. Keys are sorted; strings are always quoted.
func (Parser) Marshal(m map[string]any) ([]byte, error) {
	var b bytes.Buffer
	if err := writeFields(&b, m, 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func writeFields(b *bytes.Buffer, m map[string]any, indent int) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteString(strings.Repeat("  ", indent))
		b.WriteString(renderSegment(k))
		v := m[k]
		if sub, ok := asMap(v); ok {
			b.WriteString(" {\n")
			if err := writeFields(b, sub, indent+1); err != nil {
				return err
			}
			b.WriteString(strings.Repeat("  ", indent))
			b.WriteString("}\n")
			continue
		}
		b.WriteString(" = ")
		if err := writeValue(b, v, indent); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		b.WriteByte('\n')
	}
	return nil
}

func asMap(v any) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	return m, ok
}

func writeValue(b *bytes.Buffer, v any, indent int) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		b.WriteString(quote(x))
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case time.Duration:
		b.WriteString(quote(x.String()))
	case float32:
		return writeValue(b, float64(x), indent)
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("cannot represent %v in HOCON", x)
		}
		s := strconv.FormatFloat(x, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eE") {
			s += ".0"
		}
		b.WriteString(s)
	case map[string]any:
		b.WriteString("{\n")
		if err := writeFields(b, x, indent+1); err != nil {
			return err
		}
		b.WriteString(strings.Repeat("  ", indent))
		b.WriteString("}")
	case []any:
		b.WriteString("[")
		for i, it := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := writeValue(b, it, indent); err != nil {
				return err
			}
		}
		b.WriteString("]")
	default:
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			b.WriteString(strconv.FormatInt(rv.Int(), 10))
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			b.WriteString(strconv.FormatUint(rv.Uint(), 10))
		case reflect.Slice, reflect.Array:
			items := make([]any, rv.Len())
			for i := range items {
				items[i] = rv.Index(i).Interface()
			}
			return writeValue(b, items, indent)
		case reflect.String:
			b.WriteString(quote(rv.String()))
		default:
			return fmt.Errorf("cannot marshal %T to HOCON", v)
		}
	}
	return nil
}
