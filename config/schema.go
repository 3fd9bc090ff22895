package config

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Problem is one configuration error, naming the key it is about.
type Problem struct {
	Key     string // dotted key, e.g. inventory.compute1.address
	Message string
	Source  string // where the value came from, e.g. "from $STACKRUN_SSH_PORT" (may be empty)
}

func (p Problem) Error() string {
	s := "config: " + p.Key + ": " + p.Message
	if p.Source != "" {
		s += " (" + p.Source + ")"
	}
	return s
}

// Problems is every problem found at once; it is the error Load, Validate and
// ValidateFor return. Use errors.As to get at the keys.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Keys returns the keys named, in order.
func (ps Problems) Keys() []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Key
	}
	return out
}

func (ps *Problems) add(key, format string, args ...any) {
	*ps = append(*ps, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

var durationType = reflect.TypeFor[time.Duration]()

type leaf struct {
	key string
	typ reflect.Type
}

// schemaLeaves lists the keys of t, descending into structs only.
func schemaLeaves(t reflect.Type, prefix string) []leaf {
	var out []leaf
	for i := range t.NumField() {
		f := t.Field(i)
		name := tagName(f)
		if name == "" {
			continue
		}
		key := join(prefix, name)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			out = append(out, schemaLeaves(f.Type, key)...)
			continue
		}
		out = append(out, leaf{key: key, typ: f.Type})
	}
	return out
}

// settable: keys that defaults, environment and flags may set (not maps).
func settable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Map:
		return false
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	}
	return true
}

func tagName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag := f.Tag.Get("mapstructure")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

func fieldByKey(v reflect.Value, key string) reflect.Value {
	for _, part := range strings.Split(key, ".") {
		t := v.Type()
		for i := range t.NumField() {
			if tagName(t.Field(i)) == part {
				v = v.Field(i)
				break
			}
		}
	}
	return v
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// checkValue checks that val (as viper's AllSettings gives it) fits t,
// recording unknown keys and values of the wrong type under their full key.
func checkValue(ps *Problems, key string, val any, t reflect.Type, sources map[string]string, fileSource string) {
	if val == nil {
		return
	}
	source := func() string {
		if s, ok := sources[key]; ok {
			return s
		}
		return fileSource
	}
	bad := func(format string, args ...any) {
		*ps = append(*ps, Problem{Key: key, Message: fmt.Sprintf(format, args...), Source: source()})
	}

	switch {
	case t == durationType:
		switch x := val.(type) {
		case string:
			if _, err := time.ParseDuration(strings.TrimSpace(x)); err != nil {
				bad("invalid duration %q: want a Go duration such as 90s, 2m or 4h", x)
			}
		case time.Duration:
		case int, int64, uint64, float64:
			if fmt.Sprint(x) != "0" {
				bad("invalid duration %v: a bare number is not a duration, write e.g. %vs", x, x)
			}
		default:
			bad("invalid duration %v: want a Go duration such as 90s, 2m or 4h", x)
		}
		return
	}

	rv := reflect.ValueOf(val)
	switch t.Kind() {
	case reflect.String:
		switch rv.Kind() {
		case reflect.String, reflect.Bool,
			reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		case reflect.Float32, reflect.Float64:
			bad("YAML read the number %v; quote it (e.g. \"%v\") so that it stays a string", val, val)
		default:
			bad("want a string, got %s", describe(val))
		}
	case reflect.Int, reflect.Int64:
		switch rv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		case reflect.Float32, reflect.Float64:
			if f := rv.Float(); f != math.Trunc(f) {
				bad("want an integer, got %v", val)
			}
		case reflect.String:
			if _, err := strconv.Atoi(strings.TrimSpace(rv.String())); err != nil {
				bad("want an integer, got %q", val)
			}
		default:
			bad("want an integer, got %s", describe(val))
		}
	case reflect.Bool:
		switch rv.Kind() {
		case reflect.Bool:
		case reflect.String:
			if _, err := strconv.ParseBool(strings.TrimSpace(rv.String())); err != nil {
				bad("want true or false, got %q", val)
			}
		default:
			bad("want true or false, got %s", describe(val))
		}
	case reflect.Slice:
		if rv.Kind() == reflect.String && t.Elem().Kind() == reflect.String {
			return // a comma-separated list (environment)
		}
		if rv.Kind() != reflect.Slice {
			bad("want a list, got %s", describe(val))
			return
		}
		for i := range rv.Len() {
			sub := fmt.Sprintf("%s[%d]", key, i)
			checkValue(ps, sub, rv.Index(i).Interface(), t.Elem(), sources, source())
		}
	case reflect.Map:
		if rv.Kind() != reflect.Map {
			bad("want a mapping, got %s", describe(val))
			return
		}
		for _, k := range sortedKeys(rv) {
			checkValue(ps, join(key, k), rv.MapIndex(reflect.ValueOf(k)).Interface(), t.Elem(), sources, source())
		}
	case reflect.Struct:
		if rv.Kind() != reflect.Map {
			bad("want a mapping, got %s", describe(val))
			return
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			if name := tagName(t.Field(i)); name != "" {
				fields[name] = t.Field(i).Type
			}
		}
		for _, k := range sortedKeys(rv) {
			ft, ok := fields[strings.ToLower(k)]
			if !ok {
				msg := "unknown key"
				if s := suggest(strings.ToLower(k), fields); s != "" {
					msg += fmt.Sprintf(" (did you mean %s?)", join(key, s))
				}
				*ps = append(*ps, Problem{Key: join(key, k), Message: msg, Source: source()})
				continue
			}
			checkValue(ps, join(key, k), rv.MapIndex(reflect.ValueOf(k)).Interface(), ft, sources, fileSource)
		}
	}
}

func sortedKeys(rv reflect.Value) []string {
	var keys []string
	for _, k := range rv.MapKeys() {
		if k.Kind() == reflect.String {
			keys = append(keys, k.String())
		} else {
			keys = append(keys, fmt.Sprint(k.Interface()))
		}
	}
	sort.Strings(keys)
	// Non-string map keys cannot be looked up by string; keep only those
	// that can (viper always produces string keys).
	return slices.DeleteFunc(keys, func(k string) bool {
		return !rv.MapIndex(reflect.ValueOf(k)).IsValid()
	})
}

func describe(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("%v", v)
}

// suggest returns the known name closest to k, if close enough.
func suggest(k string, known map[string]reflect.Type) string {
	best, bestD := "", 3
	for name := range known {
		if d := levenshtein(k, name); d < bestD || (d == bestD && best != "" && name < best) {
			best, bestD = name, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
