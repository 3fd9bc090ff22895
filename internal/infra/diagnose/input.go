// Package diagnose is the pure part of the Diagnose runbook (RUNBOOKS.md §9): the symptoms and
// their input rules, the facts the read-only collectors gather, the parsers of the commands they
// run, and the analysis that turns facts into an ordered report — blast radius first, then the
// suspected component and node with the evidence for it, strongest first, each piece naming the
// command or API call that produced it. It does no I/O; the collectors are in package activities.
//
// The order follows the field reports behind issue 13: see the whole (how many instances, hosts,
// projects share the symptom) before the detail, know which component plays which role, and do
// not blame load, sshd or a disk while one address answers from two machines.
package diagnose

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Symptoms.
const (
	InstanceUnreachable = "instance-unreachable" // SSH or ping to an instance or host fails, perhaps only sometimes
	InstanceWontBoot    = "instance-wont-boot"   // an instance stays in BUILD or goes to ERROR
	DBConnectionErrors  = "db-connection-errors" // services report that they cannot reach the database
	VolumeCreateTimeout = "volume-create-timeout"
	APISlow             = "api-slow"
)

// Symptoms lists the symptoms in the order --help shows them.
var Symptoms = []string{InstanceUnreachable, InstanceWontBoot, DBConnectionErrors, VolumeCreateTimeout, APISlow}

// APIs are the API names api-slow accepts as its subject ("all" measures every one).
var APIs = []string{"identity", "compute", "placement", "image", "network", "block-storage", "object-store"}

// Subject kinds, as ParseSubject classifies a subject.
const (
	SubjectUUID = "uuid" // an instance or volume ID
	SubjectIP   = "ip"   // an address
	SubjectName = "name" // an instance, volume, host or service name: the collectors resolve it
	SubjectAPI  = "api"  // one of APIs
	SubjectAll  = "all"  // the whole cloud
)

// Subject is a classified --subject.
type Subject struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
}

// InputError names the field that is wrong and why.
type InputError struct{ Field, Value, Problem string }

func (e *InputError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Problem)
	}
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Problem)
}

var (
	reSubject = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@-]{0,254}$`)
	reUUID    = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)
)

// ValidateSymptom refuses an empty or unknown symptom.
func ValidateSymptom(s string) error {
	if s == "" {
		return &InputError{Field: "symptom", Problem: "required (" + strings.Join(Symptoms, ", ") + ")"}
	}
	if !slices.Contains(Symptoms, s) {
		return &InputError{Field: "symptom", Value: s, Problem: "unknown symptom: want one of " + strings.Join(Symptoms, ", ")}
	}
	return nil
}

// ParseSubject checks the subject against the symptom and classifies it. Only letters, digits and
// . _ : @ - pass (names, UUIDs, IPv4 and IPv6 addresses): the subject reaches commands and API
// filters, so anything a shell or a URL would read is refused here, before anything runs.
func ParseSubject(symptom, s string) (Subject, error) {
	if s == "" {
		return Subject{}, &InputError{Field: "subject", Problem: "required (" + subjectHelp(symptom) + ")"}
	}
	if !reSubject.MatchString(s) {
		return Subject{}, &InputError{Field: "subject", Value: shorten(s), Problem: "may only contain letters, digits and . _ : @ - (at most 255, not starting with a sign): " + subjectHelp(symptom)}
	}
	ip := net.ParseIP(s)
	switch symptom {
	case APISlow:
		if s == SubjectAll {
			return Subject{Kind: SubjectAll, Value: s}, nil
		}
		if !slices.Contains(APIs, s) {
			return Subject{}, &InputError{Field: "subject", Value: s, Problem: "api-slow needs an API name or all: " + strings.Join(APIs, ", ")}
		}
		return Subject{Kind: SubjectAPI, Value: s}, nil
	case InstanceWontBoot:
		if ip != nil {
			return Subject{}, &InputError{Field: "subject", Value: s, Problem: "instance-wont-boot needs an instance ID or name, not an address"}
		}
	case DBConnectionErrors, VolumeCreateTimeout:
		if s == SubjectAll {
			return Subject{Kind: SubjectAll, Value: s}, nil
		}
		if ip != nil {
			return Subject{}, &InputError{Field: "subject", Value: s, Problem: symptom + " needs " + subjectHelp(symptom)}
		}
	case InstanceUnreachable:
		if ip != nil {
			if ip.IsUnspecified() || ip.IsMulticast() || ip.Equal(net.IPv4bcast) {
				return Subject{}, &InputError{Field: "subject", Value: s, Problem: "not a unicast address"}
			}
			return Subject{Kind: SubjectIP, Value: ip.String()}, nil
		}
	default:
		return Subject{}, ValidateSymptom(symptom)
	}
	if reUUID.MatchString(s) {
		return Subject{Kind: SubjectUUID, Value: strings.ToLower(s)}, nil
	}
	if strings.Contains(s, ":") {
		return Subject{}, &InputError{Field: "subject", Value: s, Problem: "':' only in an address: " + subjectHelp(symptom)}
	}
	return Subject{Kind: SubjectName, Value: s}, nil
}

func subjectHelp(symptom string) string {
	switch symptom {
	case InstanceUnreachable:
		return "an instance ID or name, an inventory host, or an IP address"
	case InstanceWontBoot:
		return "an instance ID or name"
	case DBConnectionErrors:
		return "the service or host that reports the errors, or all"
	case VolumeCreateTimeout:
		return "a volume ID or name, or all"
	case APISlow:
		return "an API (" + strings.Join(APIs, ", ") + ") or all"
	}
	return "see --symptom"
}

func shorten(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Window bounds of --since.
const (
	MinSince     = time.Minute
	MaxSince     = 7 * 24 * time.Hour
	DefaultSince = 30 * time.Minute
)

var reDays = regexp.MustCompile(`^([0-9]{1,2})d$`)

// ParseSince reads --since: a duration back from now such as 30m, 2h, 1h30m or 3d (empty: 30m),
// between 1m and 7d.
func ParseSince(s string) (time.Duration, error) {
	if s == "" {
		return DefaultSince, nil
	}
	var d time.Duration
	if m := reDays.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		d, err = time.ParseDuration(s)
		if err != nil || strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
			return 0, &InputError{Field: "since", Value: shorten(s), Problem: "not a duration back from now (like 30m, 2h, 1h30m, 3d)"}
		}
	}
	if d < MinSince || d > MaxSince {
		return 0, &InputError{Field: "since", Value: s, Problem: fmt.Sprintf("must be between %s and 7d", MinSince)}
	}
	return d, nil
}
