package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stackrun/stackrun/activities"
)

// InspectDisk looks inside a broken instance's disk (RUNBOOKS.md §10, docs/disk-inspection.md):
// after a two-person data-access approval it suspends (or stops) the instance, exposes its disk
// read-only on its compute host, mounts the guest file system read-only, and collects the
// requested files, capped, with their SHA-256, into the report. Whatever happens after the
// approval — the collection succeeds, fails, is aborted, the run is cancelled, the worker dies —
// the exit hook unmounts, detaches and resumes, each step checking the world first, and the report
// says what state the instance is in at the end.
var InspectDisk = Define(Def[InspectDiskInput, inspectDiskPlan]{
	Name:     "inspect-disk",
	Short:    "Read files from an instance's disk, read-only, behind a two-person data-access approval; the instance is always given back",
	Steps:    []string{"locate-disk", GateDataAccess, "suspend", "expose", "mount", "collect", "unmount", "detach", "resume", "final-state"},
	Key:      func(in *InspectDiskInput) string { return in.Instance },
	Defaults: func(in *InspectDiskInput) { in.MaxBytes = DefaultInspectMaxBytes },
	Plan:     planInspectDisk,
	Act:      inspectDisk,
})

// inspector names the DiskInspector's activities (the worker registers the real one).
var inspector *activities.DiskInspector

// InspectDiskInput is the input of InspectDisk.
type InspectDiskInput struct {
	Meta
	Instance string   `json:"instance" flag:"instance" usage:"UUID of the instance whose disk is read (required)"`
	Paths    []string `json:"paths" flag:"path" usage:"absolute path of a file inside the guest; repeat the flag for more (required)"`
	MaxBytes int      `json:"max_bytes,omitempty" flag:"max-bytes" usage:"bytes returned per file at most; a bigger file is reported over the cap with its first bytes"`
}

// GateDataAccess is the gate before anyone's data is read: two-person, always.
const GateDataAccess = "data-access"

// DefaultInspectMaxBytes is --max-bytes when not given.
const DefaultInspectMaxBytes = 64 << 10

func (in *InspectDiskInput) maxBytes() int64 {
	if in.MaxBytes == 0 {
		return DefaultInspectMaxBytes
	}
	return int64(in.MaxBytes)
}

func (in *InspectDiskInput) Validate() error {
	if err := validateMeta(&in.Meta); err != nil {
		return err
	}
	if !activities.ValidInstanceID(in.Instance) {
		return &FieldError{Field: "instance", Value: in.Instance, Problem: "not an instance UUID (lower-case, 8-4-4-4-12 hex digits)"}
	}
	if strings.TrimSpace(in.Reason) == "" && !in.DryRun {
		return &FieldError{Field: "reason", Problem: "required: reading a user's data is recorded with why and who approved it"}
	}
	switch n := len(in.Paths); {
	case n == 0:
		return &FieldError{Field: "path", Problem: "required: at least one file to read"}
	case n > activities.MaxGuestPaths:
		return &FieldError{Field: "path", Problem: fmt.Sprintf("%d paths given, at most %d per run", n, activities.MaxGuestPaths)}
	}
	mb := in.maxBytes()
	if mb < 1 || mb > activities.MaxGuestFileBytes {
		return &FieldError{Field: "max-bytes", Value: fmt.Sprint(in.MaxBytes), Problem: fmt.Sprintf("must be 1 to %d", activities.MaxGuestFileBytes)}
	}
	if int64(len(in.Paths))*mb > activities.MaxGuestTotalBytes {
		return &FieldError{Field: "max-bytes", Value: fmt.Sprint(mb), Problem: fmt.Sprintf("%d paths × %d bytes is over %d bytes per run (the report must stay small): fewer paths or a smaller --max-bytes",
			len(in.Paths), mb, activities.MaxGuestTotalBytes)}
	}
	seen := map[string]bool{}
	for i, p := range in.Paths {
		if err := activities.ValidateGuestPath(p); err != nil {
			return &FieldError{Field: fmt.Sprintf("path[%d]", i), Value: displayValue(p), Problem: err.Error()}
		}
		if seen[p] {
			return &FieldError{Field: fmt.Sprintf("path[%d]", i), Value: p, Problem: "given twice"}
		}
		seen[p] = true
	}
	return nil
}

// displayValue keeps a refused value printable (NUL and newlines quoted) and short.
func displayValue(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	q := fmt.Sprintf("%+q", s)
	return q[1 : len(q)-1]
}

// inspectDiskPlan is where the disk is and whether the instance must be taken out of use.
type inspectDiskPlan struct {
	Loc activities.DiskLocation
	// Pause is suspend or stop when the instance is ACTIVE, "" when it is not running anyway.
	Pause string
}

// Statuses inspect-disk accepts, and what it does with them.
func pauseFor(status, mode, method string) (string, error) {
	switch status {
	case "ACTIVE":
		return mode, nil
	case "SUSPENDED", "SHUTOFF":
		return "", nil
	case "ERROR":
		if method == activities.MethodQSD {
			// Nova cannot suspend an ERROR instance; QEMU's lock refuses the export while a
			// guest still holds the disk.
			return "", nil
		}
		return "", errors.New("is ERROR and inspect_disk.method is loop (no lock check): stop it first (openstack server stop, or reset-state and stop)")
	}
	return "", fmt.Errorf("is %s: inspect-disk takes ACTIVE, SUSPENDED, SHUTOFF or ERROR instances", status)
}

func planInspectDisk(r *Run, in *InspectDiskInput, p *inspectDiskPlan) (Approval, error) {
	if !slices.Contains(r.Policy().TwoPersonGates, GateDataAccess) {
		return Approval{}, Summarize("refused", temporal.NewNonRetryableApplicationError(
			"policy.two_person_gates does not list data-access: reading a user's data needs a second person's approval", activities.ErrTypeRefused, nil))
	}
	err := r.Do("locate-disk", StepOptions{Target: in.Instance}, func(ctx workflow.Context) error {
		return r.Exec(ctx, "locate-disk", in.Instance, inspector.LocateInstanceDisk, &p.Loc, in.Instance)
	})
	if err != nil {
		return Approval{}, Summarize("the disk was not found", err)
	}
	loc := p.Loc
	if loc.TaskState != "" {
		return Approval{}, Summarize("refused", fmt.Errorf("instance %s is busy (task %s): try again when it is idle", loc.Instance, loc.TaskState))
	}
	if p.Pause, err = pauseFor(loc.Status, loc.Pause, loc.Method); err != nil {
		return Approval{}, Summarize("refused", fmt.Errorf("instance %s %w", loc.Instance, err))
	}
	what := fmt.Sprintf("%s of instance %s (%s) on %s", loc.Disk, loc.Instance, loc.Name, loc.Host)
	lines := []string{}
	switch p.Pause {
	case activities.PauseSuspend:
		lines = append(lines, fmt.Sprintf("suspend instance %s (ACTIVE now); resume it at the end, whatever happens", loc.Instance))
	case activities.PauseStop:
		lines = append(lines, fmt.Sprintf("stop instance %s (ACTIVE now); start it at the end, whatever happens", loc.Instance))
	default:
		lines = append(lines, fmt.Sprintf("instance %s is %s: left as it is", loc.Instance, loc.Status))
	}
	lines = append(lines,
		fmt.Sprintf("expose %s (%s, %s) read-only via %s, mount it ro,noload", what, loc.Format, byteSize(loc.VirtualSize), loc.Method),
		fmt.Sprintf("read %d file(s), at most %d bytes each: %s", len(in.Paths), in.maxBytes(), strings.Join(in.Paths, " ")),
		"unmount, detach and give the instance back, whatever happens")
	r.SetPlan(lines)
	r.SetFacts(Fact{Name: "host", Value: loc.Host}, Fact{Name: "disk", Value: loc.Disk}, Fact{Name: "format", Value: loc.Format},
		Fact{Name: "status", Value: loc.Status})
	reason := in.Reason
	if reason == "" {
		reason = "(none: dry run)"
	}
	return Approval{Gate: GateDataAccess, Summary: fmt.Sprintf("DATA ACCESS: %s wants to read %d file(s) (%s) from the disk of instance %s (%s, project data) on %s, read-only. Reason: %s",
		r.Meta().RequestedBy, len(in.Paths), strings.Join(in.Paths, ", "), loc.Instance, loc.Name, loc.Host, reason)}, nil
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

// inspectRun is what the run did so far: the exit hook gives back exactly that.
type inspectRun struct {
	r      *Run
	in     *InspectDiskInput
	plan   *inspectDiskPlan
	loc    activities.DiskLocation
	pause  string
	paused bool // the suspend (or stop) step started: the instance is owed a resume
	touch  bool // the expose step started: something may be exported, attached or mounted
}

// Activity options: the disk steps are short SSH sequences (the activities heartbeat before each
// command, so a dead worker's attempt is retried on another within the heartbeat timeout); the
// power steps wait for Nova.
var (
	diskOpts  = ActOpts{Timeout: 3 * time.Minute, Heartbeat: 20 * time.Second}
	powerOpts = ActOpts{Timeout: 10 * time.Minute, Heartbeat: 20 * time.Second}
)

// opts gives one step's activity options. A cancelled run waits for the activity to stop before
// it compensates: an expose still running on the worker must not outlive the detach.
func (x *inspectRun) opts(ctx workflow.Context, o ActOpts) workflow.Context {
	return workflow.WithWaitForCancellation(x.r.WithActivity(ctx, o), true)
}

func inspectDisk(r *Run, in *InspectDiskInput, p *inspectDiskPlan) (string, error) {
	x := &inspectRun{r: r, in: in, plan: p, loc: p.Loc, pause: p.Pause}
	// Registered before the first side effect: from here on, every way out gives back.
	r.OnExit(x.giveBack)
	summary, err := x.collect()
	if temporal.IsCanceledError(err) {
		during := ""
		if r.StepState("collect") == StepFailed && strings.HasPrefix(r.step("collect").Detail, collectCancelled) {
			during = " during collect"
		}
		err = &AbortError{Reason: "the run was cancelled" + during + "; the instance was given back (see left state)"}
	}
	return summary, err
}

// inspectCollectCancel is the workflow.GetVersion change after which a cancel of the run while
// collect runs ends collect cancelled, whatever its activity answered: with the wait for the
// activity's end, an attempt that finished without seeing the cancel (it sees one only in a
// heartbeat's answer) made collect done and the run Completed, as if nobody had cancelled it;
// one whose killed command failed stalled the step.
const inspectCollectCancel = "inspect-collect-cancel"

// collectCancelled is the detail of a collect step that the run's cancel stopped.
const collectCancelled = "cancelled while the files were read: nothing read is kept"

func (x *inspectRun) collect() (string, error) {
	r := x.r
	// The first step that changes the world: the machinery checks a stale plan again just
	// before it (stale.go), so what to suspend is read from the plan inside the step.
	err := r.Do("suspend", StepOptions{Target: x.loc.Instance}, func(ctx workflow.Context) error {
		x.loc, x.pause = x.plan.Loc, x.plan.Pause
		if x.pause == "" {
			return nil
		}
		x.paused = true
		var res activities.PowerResult
		return r.Exec(x.opts(ctx, powerOpts), "suspend", x.loc.Instance, inspector.SuspendInstance, &res,
			activities.PowerRequest{Instance: x.loc.Instance, Mode: x.pause})
	})
	if err != nil {
		return "", err
	}
	if !x.paused {
		r.setStepState(r.step("suspend"), StepSkipped, fmt.Sprintf("instance is %s: nothing to suspend", x.loc.Status))
	}
	loc := x.loc
	var exp activities.DiskExposure
	err = r.Do("expose", StepOptions{Target: loc.Host}, func(ctx workflow.Context) error {
		x.touch = true
		return r.Exec(x.opts(ctx, diskOpts), "expose", loc.Host, inspector.ExposeInstanceDisk, &exp, loc)
	})
	if err != nil {
		return "", err
	}
	err = r.Do("mount", StepOptions{Target: loc.Host, NoSkip: true}, func(ctx workflow.Context) error {
		var m activities.DiskMountResult
		return r.Exec(x.opts(ctx, diskOpts), "mount", loc.Host, inspector.MountGuestFS, &m, activities.DiskMountRequest{Location: loc, Exposure: exp})
	})
	if err != nil {
		return "", err
	}
	var files []activities.GuestFile
	cancels := workflow.GetVersion(r.ctx, inspectCollectCancel, workflow.DefaultVersion, 1) == 1
	err = r.Do("collect", StepOptions{Target: loc.Host}, func(ctx workflow.Context) error {
		err := r.Exec(x.opts(ctx, diskOpts), "collect", loc.Host, inspector.ReadGuestFiles, &files,
			activities.GuestFileRequest{Location: loc, Paths: x.in.Paths, MaxBytes: x.in.maxBytes()})
		if cancels && ctx.Err() != nil {
			// Cancelled while the activity ran (it has ended: WithWaitForCancellation).
			files = nil
			r.step("collect").Detail = collectCancelled
			if err != nil && !temporal.IsCanceledError(err) {
				r.step("collect").Detail += " (the attempt ended with: " + errText(err) + ")"
			}
			return temporal.NewCanceledError()
		}
		return err
	})
	if err != nil {
		return "", err
	}
	r.SetDetail("files", files)
	r.SetDetail("exposure", exp)
	count := map[string]int{}
	for _, f := range files {
		count[f.Status]++
		switch f.Status {
		case activities.FileMissing:
			r.AddFinding(activities.SeverityWarning, f.Path, "not found in the guest: %s", f.Detail)
		case activities.FileRefused:
			r.AddFinding(activities.SeverityWarning, f.Path, "refused, not read: %s", f.Detail)
		case activities.FileOverCap:
			r.AddFinding(activities.SeverityInfo, f.Path, "%s", f.Detail)
		}
	}
	return fmt.Sprintf("%d of %d file(s) read (%d over the cap), %d missing, %d refused", count[activities.FileOK]+count[activities.FileOverCap],
		len(files), count[activities.FileOverCap], count[activities.FileMissing], count[activities.FileRefused]), nil
}

// giveBack is the compensation: unmount, detach, resume, on a context the run's cancellation does
// not reach. Each step's activity checks the world first and is retried, then stalls and notifies
// (an operator may retry, skip or abort it). The instance is resumed only once nothing of its
// disk is exposed any more, and only if this run suspended it.
func (x *inspectRun) giveBack() {
	r, loc := x.r, x.loc
	ctx, _ := workflow.NewDisconnectedContext(r.ctx)
	exposed := "nothing exposed"
	if x.touch {
		err := r.DoIn(ctx, "unmount", StepOptions{Target: loc.Host}, func(ctx workflow.Context) error {
			var res activities.DiskUnmountResult
			return r.Exec(x.opts(ctx, diskOpts), "unmount", loc.Host, inspector.UnmountGuestFS, &res, loc)
		})
		if err == nil {
			err = r.DoIn(ctx, "detach", StepOptions{Target: loc.Host}, func(ctx workflow.Context) error {
				var res activities.DiskDetachResult
				return r.Exec(x.opts(ctx, diskOpts), "detach", loc.Host, inspector.DetachInstanceDisk, &res, loc)
			})
		} else {
			r.setStepState(r.step("detach"), StepSkipped, "not tried: the guest file system is still mounted")
		}
		if err != nil {
			exposed = fmt.Sprintf("its disk may still be exposed on %s (%s): %s", loc.Host, loc.Work, errText(err))
		}
	} else {
		for _, s := range []string{"unmount", "detach"} {
			r.setStepState(r.step(s), StepSkipped, "nothing was exposed")
		}
	}
	switch {
	case !x.paused:
		r.setStepState(r.step("resume"), StepSkipped, "this run did not suspend the instance")
	case exposed != "nothing exposed":
		r.setStepState(r.step("resume"), StepSkipped, "not resumed while its disk may still be exposed")
	default:
		_ = r.DoIn(ctx, "resume", StepOptions{Target: loc.Instance}, func(ctx workflow.Context) error {
			var res activities.PowerResult
			return r.Exec(x.opts(ctx, powerOpts), "resume", loc.Instance, inspector.ResumeInstance, &res,
				activities.PowerRequest{Instance: loc.Instance, Mode: x.pause})
		})
	}
	x.finalState(ctx, exposed)
}

// finalState reads the world once more and says in the report what the instance is left in.
func (x *inspectRun) finalState(ctx workflow.Context, exposed string) {
	r, loc := x.r, x.loc
	var inst activities.Instance
	var world activities.DiskWorld
	err := r.DoIn(ctx, "final-state", StepOptions{Target: loc.Instance, ReadOnly: true, Finding: activities.SeverityWarning}, func(ctx workflow.Context) error {
		if err := r.Exec(ctx, "final-state", loc.Instance, compute.GetInstance, &inst, loc.Instance); err != nil {
			return err
		}
		return r.Exec(ctx, "final-state", loc.Host, inspector.DiskInspectionState, &world, loc)
	})
	known := err == nil && inst.Status != ""
	r.SetDetail("final_state", map[string]any{"known": known, "instance_status": inst.Status, "host": loc.Host, "disk": world, "clean": known && world.Clean()})
	left := fmt.Sprintf("instance %s is %s", loc.Instance, inst.Status)
	if !known {
		left = fmt.Sprintf("instance %s: state unknown (could not read it back: see the final-state finding)", loc.Instance)
	}
	switch {
	case !x.touch:
		left += "; its disk was never exposed"
	case known && world.Clean() && exposed == "nothing exposed":
		left += "; nothing of its disk is mounted, attached or exported"
	default:
		left += fmt.Sprintf("; %s — check by hand: unmount %s, detach the loop devices over %s and stop its qemu-storage-daemon by hand, then resume the instance (docs/disk-inspection.md)",
			strings.TrimPrefix(exposed, "nothing exposed"), loc.MountPoint, loc.Export)
	}
	if x.paused && known && inst.Status != "ACTIVE" {
		left += fmt.Sprintf("; it was ACTIVE before this run: `openstack server %s %s` gives it back",
			map[string]string{activities.PauseSuspend: "resume", activities.PauseStop: "start"}[x.pause], loc.Instance)
	}
	r.SetLeftState(left)
}
