// Package inputflags binds command-line flags to the fields of a runbook input by reflection:
// the operators' CLI (stackrun run <runbook>) and the chat gateway (/stackrun <runbook> ...)
// parse the same flags into the same inputs, validated the same way.
package inputflags

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Flag describes one flag generated from a runbook input field.
type Flag struct {
	Name     string
	Usage    string
	Kind     string // string, int, int64, bool, strings, time, duration
	Required bool   // the usage says "(required)"; Validate decides
}

var (
	timeType     = reflect.TypeFor[time.Time]()
	durationType = reflect.TypeFor[time.Duration]()
)

// Bind defines one flag per field of the input struct (a pointer) that carries a
// `flag:"name"` tag, bound directly to the field. Anonymous embedded structs (workflows.Meta) are
// walked; `flag:"-"` and untagged fields are skipped. Supported kinds: string, int, int64, bool,
// []string (comma list), time.Time (RFC 3339) and time.Duration; any other kind is refused so
// that a runbook cannot silently lose an input.
func Bind(fs *pflag.FlagSet, in any) ([]Flag, error) {
	v := reflect.ValueOf(in)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("input flags: need a pointer to a struct, got %T", in)
	}
	var out []Flag
	if err := bindStruct(fs, v.Elem(), &out); err != nil {
		return nil, err
	}
	return out, nil
}

func bindStruct(fs *pflag.FlagSet, v reflect.Value, out *[]Flag) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, tagged := f.Tag.Lookup("flag")
		if f.Anonymous && f.Type.Kind() == reflect.Struct && !tagged {
			if err := bindStruct(fs, v.Field(i), out); err != nil {
				return err
			}
			continue
		}
		if !tagged || name == "-" {
			continue
		}
		if !f.IsExported() {
			return fmt.Errorf("input flags: field %s.%s (--%s) is not exported", t.Name(), f.Name, name)
		}
		if name == "" || strings.ContainsAny(name, " =,") || strings.HasPrefix(name, "-") {
			return fmt.Errorf("input flags: field %s.%s: bad flag name %q", t.Name(), f.Name, name)
		}
		if fs.Lookup(name) != nil {
			return fmt.Errorf("input flags: field %s.%s: flag --%s is already defined", t.Name(), f.Name, name)
		}
		usage := f.Tag.Get("usage")
		p := v.Field(i).Addr().Interface()
		var kind string
		switch {
		case f.Type == timeType:
			fs.Var((*timeValue)(p.(*time.Time)), name, usage)
			kind = "time"
		case f.Type == durationType:
			fs.DurationVar(p.(*time.Duration), name, 0, usage)
			kind = "duration"
		case f.Type.Kind() == reflect.String && f.Type == reflect.TypeFor[string]():
			fs.StringVar(p.(*string), name, "", usage)
			kind = "string"
		case f.Type == reflect.TypeFor[int]():
			fs.IntVar(p.(*int), name, *p.(*int), usage) // NewInput's value is the default
			kind = "int"
		case f.Type == reflect.TypeFor[int64]():
			fs.Int64Var(p.(*int64), name, 0, usage)
			kind = "int64"
		case f.Type == reflect.TypeFor[bool]():
			fs.BoolVar(p.(*bool), name, false, usage)
			kind = "bool"
		case f.Type == reflect.TypeFor[[]string]():
			fs.Var(&commaList{p: p.(*[]string)}, name, usage)
			kind = "strings"
		default:
			return fmt.Errorf("input flags: field %s.%s (--%s) has type %s, which has no flag kind (string, int, int64, bool, []string, time.Time, time.Duration)",
				t.Name(), f.Name, name, f.Type)
		}
		*out = append(*out, Flag{Name: name, Usage: usage, Kind: kind, Required: strings.Contains(usage, "(required)")})
	}
	return nil
}

// timeValue is a time.Time flag in RFC 3339.
type timeValue time.Time

func (t *timeValue) String() string {
	if time.Time(*t).IsZero() {
		return ""
	}
	return time.Time(*t).Format(time.RFC3339)
}

func (t *timeValue) Set(s string) error {
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return fmt.Errorf("not an RFC 3339 time (e.g. 2026-05-01T14:00:00Z)")
	}
	*t = timeValue(v)
	return nil
}

func (t *timeValue) Type() string { return "time" }

// Example renders the required flags of a runbook as an example command line.
func Example(flags []Flag) string {
	var parts []string
	for _, f := range flags {
		if !f.Required {
			continue
		}
		switch f.Kind {
		case "bool":
			parts = append(parts, "--"+f.Name)
		default:
			parts = append(parts, fmt.Sprintf("--%s <%s>", f.Name, f.Name))
		}
	}
	return strings.Join(parts, " ")
}

// commaList is a []string flag split on commas only. pflag's StringSlice reads its value as CSV,
// which drops what follows a newline ("compute1\nx" became compute1) and strips a trailing \r:
// a hostile value turned into another, valid one. Here every byte stays, for Validate to refuse.
type commaList struct {
	p       *[]string
	changed bool
}

func (c *commaList) Set(v string) error {
	parts := strings.Split(v, ",")
	if !c.changed {
		*c.p = parts
	} else {
		*c.p = append(*c.p, parts...)
	}
	c.changed = true
	return nil
}

func (c *commaList) Type() string { return "stringSlice" } // shown as "strings" in --help

func (c *commaList) String() string { return "[" + strings.Join(*c.p, ",") + "]" }
