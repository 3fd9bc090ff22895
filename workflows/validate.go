package workflows

import (
	"fmt"
	"regexp"
	"unicode"
	"unicode/utf8"
)

var (
	hostRE    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	serviceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9@._-]{0,63}$`)
	roleRE    = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
)

// FieldError is a validation error that names the field.
type FieldError struct {
	Field, Value, Problem string
}

func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Problem)
	}
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Problem)
}

// ValidateHostName checks an inventory host name (RFC 1123, at most 253 characters).
func ValidateHostName(field, v string) error {
	if v == "" {
		return &FieldError{Field: field, Problem: "required"}
	}
	if len(v) > 253 || !hostRE.MatchString(v) {
		return &FieldError{Field: field, Value: v, Problem: "not a valid host name (letters, digits, '-' and '.')"}
	}
	return nil
}

// ValidateServiceName checks a service name as systemd and the lab controller accept it.
func ValidateServiceName(field, v string) error {
	if v == "" {
		return &FieldError{Field: field, Problem: "required"}
	}
	if !serviceRE.MatchString(v) {
		return &FieldError{Field: field, Value: v, Problem: "not a valid service name (lower-case letters, digits, '@._-', at most 64)"}
	}
	return nil
}

func validateMeta(m *Meta) error {
	if !ValidOperator(m.RequestedBy) {
		return &FieldError{Field: "requested_by", Value: m.RequestedBy, Problem: "not a valid operator name (letters, digits, '._@-', at most 64)"}
	}
	if len(m.Reason) > 500 {
		return &FieldError{Field: "reason", Problem: "longer than 500 characters"}
	}
	return validateText("reason", m.Reason)
}

// validateText refuses, in free text that reaches reports, chat, terminals and Nova, what is not
// text: invalid UTF-8, control characters but tab (C0, DEL, and C1, whose U+009B is a terminal's
// CSI), and the bidirectional overrides that make a terminal show other text than is stored.
func validateText(field, v string) error {
	if !utf8.ValidString(v) {
		return &FieldError{Field: field, Problem: "is not valid UTF-8"}
	}
	for _, c := range v {
		if (unicode.IsControl(c) && c != '\t') || unicode.Is(unicode.Bidi_Control, c) {
			return &FieldError{Field: field, Problem: fmt.Sprintf("contains control characters (%U)", c)}
		}
	}
	return nil
}

// NovaDisabledReasonMax is the length of Nova's services.disabled_reason column (String(255)).
const NovaDisabledReasonMax = 255

// ValidateDisabledReason checks a reason that becomes a compute service's disabled reason as
// prefix+reason: at most 255 characters in all, and no control character (tab, ESC, DEL, C1)
// that would end up in Nova's database and in every `openstack compute service list`.
func ValidateDisabledReason(prefix, reason string) error {
	if err := validateText("reason", reason); err != nil {
		return err
	}
	if n := len([]rune(prefix + reason)); n > NovaDisabledReasonMax {
		return &FieldError{Field: "reason", Problem: fmt.Sprintf("too long for Nova's disabled_reason: %d characters with %q, at most %d", n, prefix, NovaDisabledReasonMax)}
	}
	for _, c := range reason {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return &FieldError{Field: "reason", Problem: fmt.Sprintf("contains the control character %U (Nova's disabled_reason takes text only)", c)}
		}
	}
	return nil
}
