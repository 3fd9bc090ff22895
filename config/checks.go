package config

import (
	_ "embed"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Checks configures the recurring checks (RUNBOOKS.md §7): when each cadence's Temporal Schedule
// fires, where the reports are kept (a MySQL/MariaDB database whose schema Stackrun creates),
// what the probes ask, and their thresholds.
type Checks struct {
	// TimeZone is the IANA time zone the schedules' times are in (default UTC).
	TimeZone string `mapstructure:"time_zone" yaml:"time_zone" json:"time_zone"`
	// CatchupWindow is how late a missed action may still run (the server's default is a year).
	CatchupWindow time.Duration `mapstructure:"catchup_window" yaml:"catchup_window" json:"catchup_window"`
	// Parallelism bounds how many probes of one check run at once.
	Parallelism int `mapstructure:"parallelism" yaml:"parallelism" json:"parallelism"`
	// ProbeTimeout bounds one probe activity (the alerting test waits up to its own timeout).
	ProbeTimeout time.Duration `mapstructure:"probe_timeout" yaml:"probe_timeout" json:"probe_timeout"`
	// ReportsDSN is the go-sql-driver/mysql DSN of the reports database (empty: reports are not
	// stored, so no trends and no "new since last time"); reports_dsn_file reads it from a file.
	ReportsDSN     string `mapstructure:"reports_dsn" yaml:"reports_dsn" json:"reports_dsn"`
	ReportsDSNFile string `mapstructure:"reports_dsn_file" yaml:"reports_dsn_file,omitempty" json:"reports_dsn_file,omitempty"`
	// Schedules says when each cadence fires.
	Schedules CheckSchedules `mapstructure:"schedules" yaml:"schedules" json:"schedules"`
	// Alertmanager is the monitoring system the hourly check reads and the weekly check tests.
	Alertmanager CheckAlertmanager `mapstructure:"alertmanager" yaml:"alertmanager" json:"alertmanager"`
	// TicketsURL answers GET with a JSON list of tickets (hourly: the new ones are findings).
	TicketsURL string `mapstructure:"tickets_url" yaml:"tickets_url" json:"tickets_url"`
	// FailureDomains are the inventory labels alerts are grouped by, widest first.
	FailureDomains []string `mapstructure:"failure_domains" yaml:"failure_domains" json:"failure_domains"`
	// OSFamilyLabel is the inventory label naming a host's OS family; DefaultOSFamily applies
	// without it. The pending-security-updates command of family F is commands.security_updates_F.
	OSFamilyLabel   string `mapstructure:"os_family_label" yaml:"os_family_label" json:"os_family_label"`
	DefaultOSFamily string `mapstructure:"default_os_family" yaml:"default_os_family" json:"default_os_family"`
	// Thresholds of the weekly check.
	Thresholds CheckThresholds `mapstructure:"thresholds" yaml:"thresholds" json:"thresholds"`
	// AccountMaxInactive: accounts inactive for longer are proposed for removal (monthly).
	AccountMaxInactive time.Duration `mapstructure:"account_max_inactive" yaml:"account_max_inactive" json:"account_max_inactive"`
	// NextRelease is the OpenStack release to plan for (quarterly), e.g. "2023.1 Antelope".
	NextRelease string `mapstructure:"next_release" yaml:"next_release" json:"next_release"`
	// ReleaseTable is a file or http(s) URL of the OpenStack release table (JSON: name, nova,
	// released, maintained_until): the quarterly review reads the installed release's end of
	// maintenance from it. Empty: the table built into Stackrun (config/openstack_releases.json).
	ReleaseTable string `mapstructure:"release_table" yaml:"release_table" json:"release_table"`
	// ReleasePackage is the package whose installed version tells the release (its upstream
	// major version is Nova's, e.g. python3-nova 2:26.2.2 is Zed), read on the first controller.
	ReleasePackage string `mapstructure:"release_package" yaml:"release_package" json:"release_package"`
	// StuckAfter: an instance in a task state (migrating, spawning...) or VERIFY_RESIZE for
	// longer is a finding (daily).
	StuckAfter time.Duration `mapstructure:"stuck_after" yaml:"stuck_after" json:"stuck_after"`
	// DesiredStateKey is the instance metadata key recording the state an instance should be in
	// (active): a SHUTOFF instance whose key says active is a finding (daily).
	DesiredStateKey string `mapstructure:"desired_state_key" yaml:"desired_state_key" json:"desired_state_key"`
}

// CheckSchedules holds one schedule per cadence. The key names are the cadences
// (half_yearly is the cadence half-yearly).
type CheckSchedules struct {
	Hourly     CheckSchedule `mapstructure:"hourly" yaml:"hourly" json:"hourly"`
	Daily      CheckSchedule `mapstructure:"daily" yaml:"daily" json:"daily"`
	Weekly     CheckSchedule `mapstructure:"weekly" yaml:"weekly" json:"weekly"`
	Monthly    CheckSchedule `mapstructure:"monthly" yaml:"monthly" json:"monthly"`
	Quarterly  CheckSchedule `mapstructure:"quarterly" yaml:"quarterly" json:"quarterly"`
	HalfYearly CheckSchedule `mapstructure:"half_yearly" yaml:"half_yearly" json:"half_yearly"`
}

// CheckSchedule is when one cadence fires: hourly at Minute; daily at At ("HH:MM"); weekly on
// Weekday at At; monthly on Day at At; quarterly on Day of January, April, July and October;
// half-yearly on Day of January and July. Disabled leaves the schedule out of `schedules apply`.
type CheckSchedule struct {
	Minute   int    `mapstructure:"minute" yaml:"minute,omitempty" json:"minute,omitempty"`
	At       string `mapstructure:"at" yaml:"at,omitempty" json:"at,omitempty"`
	Weekday  string `mapstructure:"weekday" yaml:"weekday,omitempty" json:"weekday,omitempty"`
	Day      int    `mapstructure:"day" yaml:"day,omitempty" json:"day,omitempty"`
	Disabled bool   `mapstructure:"disabled" yaml:"disabled,omitempty" json:"disabled,omitempty"`
}

// CheckAlertmanager is the Prometheus Alertmanager (v2 API) and the alerting test's receiver.
type CheckAlertmanager struct {
	// URL is Alertmanager's base URL (http://host:9093); empty skips the alert probes.
	URL string `mapstructure:"url" yaml:"url" json:"url"`
	// ReceiverAddress is where the weekly alerting test listens for the webhook Alertmanager
	// sends (host:port); Alertmanager must route alertname StackrunAlertingTest there.
	ReceiverAddress string `mapstructure:"receiver_address" yaml:"receiver_address" json:"receiver_address"`
	// DeliveryTimeout is how long the alerting test waits for the delivery.
	DeliveryTimeout time.Duration `mapstructure:"delivery_timeout" yaml:"delivery_timeout" json:"delivery_timeout"`
}

// CheckThresholds are the weekly check's limits (percentages are 1-100).
type CheckThresholds struct {
	QuotaPercent       int `mapstructure:"quota_percent" yaml:"quota_percent" json:"quota_percent"`
	DiskPercent        int `mapstructure:"disk_percent" yaml:"disk_percent" json:"disk_percent"`
	IPFreePercent      int `mapstructure:"ip_free_percent" yaml:"ip_free_percent" json:"ip_free_percent"`
	LargeInstanceVCPUs int `mapstructure:"large_instance_vcpus" yaml:"large_instance_vcpus" json:"large_instance_vcpus"`
	LargeInstanceRAMMB int `mapstructure:"large_instance_ram_mb" yaml:"large_instance_ram_mb" json:"large_instance_ram_mb"`
}

// Cadences are the recurring checks' names, in order.
var Cadences = []string{"hourly", "daily", "weekly", "monthly", "quarterly", "half-yearly"}

// Schedule returns the schedule of a cadence.
func (s CheckSchedules) Schedule(cadence string) (CheckSchedule, bool) {
	switch cadence {
	case "hourly":
		return s.Hourly, true
	case "daily":
		return s.Daily, true
	case "weekly":
		return s.Weekly, true
	case "monthly":
		return s.Monthly, true
	case "quarterly":
		return s.Quarterly, true
	case "half-yearly", "half_yearly":
		return s.HalfYearly, true
	}
	return CheckSchedule{}, false
}

// CadenceKey is the configuration key of a cadence's schedule.
func CadenceKey(cadence string) string {
	return "checks.schedules." + strings.ReplaceAll(cadence, "-", "_")
}

// Defaults of the checks section.
const (
	DefaultChecksTimeZone        = "UTC"
	DefaultChecksCatchupWindow   = 10 * time.Minute
	DefaultChecksParallelism     = 20
	DefaultChecksProbeTimeout    = 2 * time.Minute
	DefaultAlertDeliveryTimeout  = 90 * time.Second
	DefaultAccountMaxInactive    = 90 * 24 * time.Hour
	DefaultOSFamilyLabel         = "os_family"
	DefaultOSFamily              = "debian"
	DefaultAlertReceiverAddress  = "127.0.0.1:9099"
	DefaultQuotaPercent          = 80
	DefaultDiskPercent           = 85
	DefaultIPFreePercent         = 10
	DefaultLargeInstanceVCPUs    = 16
	DefaultLargeInstanceRAMMB    = 65536
	maxCheckCatchupWindowAdvised = 24 * time.Hour
)

func defaultChecks() Checks {
	return Checks{
		TimeZone: DefaultChecksTimeZone, CatchupWindow: DefaultChecksCatchupWindow,
		Parallelism: DefaultChecksParallelism, ProbeTimeout: DefaultChecksProbeTimeout,
		Schedules: CheckSchedules{
			Hourly:     CheckSchedule{Minute: 5},
			Daily:      CheckSchedule{At: "06:00"},
			Weekly:     CheckSchedule{Weekday: "monday", At: "06:30"},
			Monthly:    CheckSchedule{Day: 1, At: "07:00"},
			Quarterly:  CheckSchedule{Day: 1, At: "07:30"},
			HalfYearly: CheckSchedule{Day: 2, At: "08:00"},
		},
		Alertmanager:       CheckAlertmanager{ReceiverAddress: DefaultAlertReceiverAddress, DeliveryTimeout: DefaultAlertDeliveryTimeout},
		FailureDomains:     []string{"rack", "switch", "host"},
		OSFamilyLabel:      DefaultOSFamilyLabel,
		DefaultOSFamily:    DefaultOSFamily,
		AccountMaxInactive: DefaultAccountMaxInactive,
		ReleasePackage:     "python3-nova",
		StuckAfter:         time.Hour,
		DesiredStateKey:    "desired_state",
		Thresholds: CheckThresholds{
			QuotaPercent: DefaultQuotaPercent, DiskPercent: DefaultDiskPercent, IPFreePercent: DefaultIPFreePercent,
			LargeInstanceVCPUs: DefaultLargeInstanceVCPUs, LargeInstanceRAMMB: DefaultLargeInstanceRAMMB,
		},
	}
}

// Weekdays accepted by checks.schedules.weekly.weekday.
var Weekdays = map[string]time.Weekday{
	"sunday": time.Sunday, "monday": time.Monday, "tuesday": time.Tuesday, "wednesday": time.Wednesday,
	"thursday": time.Thursday, "friday": time.Friday, "saturday": time.Saturday,
}

// ParseAt parses "HH:MM".
func ParseAt(s string) (hour, minute int, err error) {
	h, m, ok := strings.Cut(s, ":")
	hour, err1 := strconv.Atoi(h)
	minute, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hour < 0 || hour > 23 || minute < 0 || minute > 59 {
		return 0, 0, fmt.Errorf("%q is not a time of day HH:MM (24-hour)", s)
	}
	return hour, minute, nil
}

func (c *Config) validateChecks(ps *Problems) {
	ch := c.Checks
	if _, err := time.LoadLocation(ch.TimeZone); err != nil || ch.TimeZone == "" || ch.TimeZone == "Local" {
		ps.add("checks.time_zone", "%q is not an IANA time zone (e.g. UTC, Europe/Berlin)", ch.TimeZone)
	}
	if ch.CatchupWindow < 10*time.Second || ch.CatchupWindow > maxCheckCatchupWindowAdvised {
		ps.add("checks.catchup_window", "%s: must be between 10s (Temporal's minimum) and 24h (a check that late is stale)", ch.CatchupWindow)
	}
	if ch.Parallelism < 1 || ch.Parallelism > 500 {
		ps.add("checks.parallelism", "%d: must be between 1 and 500", ch.Parallelism)
	}
	if ch.ProbeTimeout < time.Second {
		ps.add("checks.probe_timeout", "%s: must be at least 1s", ch.ProbeTimeout)
	}
	if ch.ReportsDSN != "" {
		if d, err := mysql.ParseDSN(ch.ReportsDSN); err != nil {
			ps.add("checks.reports_dsn", "invalid DSN: %v", err)
		} else if d.DBName == "" {
			ps.add("checks.reports_dsn", "DSN names no database (…/stackrun)")
		}
	}
	for _, cad := range Cadences {
		s, _ := ch.Schedules.Schedule(cad)
		key := CadenceKey(cad)
		if err := s.Check(cad); err != nil {
			ps.add(key, "%v", err)
		}
	}
	if ch.Alertmanager.URL != "" {
		if err := checkHTTPURL(ch.Alertmanager.URL); err != nil {
			ps.add("checks.alertmanager.url", "%v", err)
		}
	}
	if err := checkHostPort(ch.Alertmanager.ReceiverAddress, true); err != nil {
		ps.add("checks.alertmanager.receiver_address", "%v", err)
	}
	if ch.Alertmanager.DeliveryTimeout < time.Second {
		ps.add("checks.alertmanager.delivery_timeout", "%s: must be at least 1s", ch.Alertmanager.DeliveryTimeout)
	}
	if ch.TicketsURL != "" {
		if err := checkHTTPURL(ch.TicketsURL); err != nil {
			ps.add("checks.tickets_url", "%v", err)
		}
	}
	if len(ch.FailureDomains) == 0 {
		ps.add("checks.failure_domains", "list at least one inventory label (e.g. rack, switch, host)")
	}
	if ch.DefaultOSFamily == "" || strings.ContainsAny(ch.DefaultOSFamily, " /") {
		ps.add("checks.default_os_family", "%q: want a short name such as debian or rhel", ch.DefaultOSFamily)
	}
	t := reflect.ValueOf(ch.Thresholds)
	for i := range t.NumField() {
		f := t.Type().Field(i)
		v := int(t.Field(i).Int())
		key := "checks.thresholds." + f.Tag.Get("mapstructure")
		if strings.HasSuffix(key, "_percent") && (v < 1 || v > 100) {
			ps.add(key, "%d: must be 1-100", v)
		} else if v < 1 {
			ps.add(key, "%d: must be positive", v)
		}
	}
	if ch.AccountMaxInactive < 24*time.Hour {
		ps.add("checks.account_max_inactive", "%s: must be at least 24h", ch.AccountMaxInactive)
	}
}

// Check validates one cadence's schedule.
func (s CheckSchedule) Check(cadence string) error {
	if cadence == "hourly" {
		if s.Minute < 0 || s.Minute > 59 {
			return fmt.Errorf("minute %d: must be 0-59", s.Minute)
		}
		if s.At != "" || s.Weekday != "" || s.Day != 0 {
			return fmt.Errorf("hourly takes only minute (and disabled)")
		}
		return nil
	}
	if s.Minute != 0 {
		return fmt.Errorf("minute is for hourly only; use at: \"HH:MM\"")
	}
	if _, _, err := ParseAt(s.At); err != nil {
		return fmt.Errorf("at: %v", err)
	}
	switch cadence {
	case "daily":
		if s.Weekday != "" || s.Day != 0 {
			return fmt.Errorf("daily takes only at (and disabled)")
		}
	case "weekly":
		if _, ok := Weekdays[strings.ToLower(s.Weekday)]; !ok {
			return fmt.Errorf("weekday %q: want monday..sunday", s.Weekday)
		}
		if s.Day != 0 {
			return fmt.Errorf("weekly takes weekday, not day")
		}
	default:
		if s.Day < 1 || s.Day > 28 {
			return fmt.Errorf("day %d: must be 1-28 (a day every month has)", s.Day)
		}
		if s.Weekday != "" {
			return fmt.Errorf("%s takes day, not weekday", cadence)
		}
	}
	return nil
}

// OpenStackReleases is the built-in release table (checks.release_table overrides it).
//
//go:embed openstack_releases.json
var OpenStackReleases []byte
