package main

import (
	"context"
	"errors"
	"slices"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/stackrun/stackrun/activities"
)

// mockInspector stands for activities.DiskInspector and Compute.GetInstance: one ACTIVE
// instance on the run's host. The world holds the instance's status and whether its disk is
// exported, attached to a loop device and mounted. Effects: suspend, resume, export, mount,
// unmount, detach — each done only when the world is not so already, as the real ones check.
type mockInspector struct {
	st   *Store
	host string
}

func registerInspector(w worker.Worker, st *Store, host string) {
	d := &mockInspector{st: st, host: host}
	reg := func(name string, fn any) { w.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg("LocateInstanceDisk", d.LocateInstanceDisk)
	reg("SuspendInstance", d.SuspendInstance)
	reg("ResumeInstance", d.ResumeInstance)
	reg("ExposeInstanceDisk", d.ExposeInstanceDisk)
	reg("MountGuestFS", d.MountGuestFS)
	reg("ReadGuestFiles", d.ReadGuestFiles)
	reg("UnmountGuestFS", d.UnmountGuestFS)
	reg("DetachInstanceDisk", d.DetachInstanceDisk)
	reg("DiskInspectionState", d.DiskInspectionState)
	reg("GetInstance", d.GetInstance)
}

func (d *mockInspector) status() string {
	if s := d.st.Get("vm/status"); s != "" {
		return s
	}
	return "ACTIVE"
}

func (d *mockInspector) LocateInstanceDisk(ctx context.Context, id string) (activities.DiskLocation, error) {
	time.Sleep(work)
	work := "/run/stackrun/inspect/" + id
	return activities.DiskLocation{Instance: id, Name: "broken-vm", Host: d.host, Status: d.status(),
		Disk: "/var/lib/nova/instances/" + id + "/disk", Format: "qcow2", FormatFrom: "disk.info", VirtualSize: 1 << 30, FileSize: 1 << 20,
		Method: activities.MethodQSD, Pause: activities.PauseSuspend, Work: work, Export: work + "/export.raw", PIDFile: work + "/qsd.pid", MountPoint: work + "/mnt"}, nil
}

func (d *mockInspector) SuspendInstance(ctx context.Context, req activities.PowerRequest) (activities.PowerResult, error) {
	time.Sleep(work)
	before := d.status()
	acted := before == "ACTIVE" && d.st.Act("vm/status", "SUSPENDED", "suspend instance")
	return activities.PowerResult{Instance: req.Instance, Before: before, After: "SUSPENDED", Acted: acted}, nil
}

func (d *mockInspector) ResumeInstance(ctx context.Context, req activities.PowerRequest) (activities.PowerResult, error) {
	time.Sleep(work)
	if d.st.Get("disk/exported") == "yes" || d.st.Get("disk/mounted") == "yes" {
		return activities.PowerResult{}, errors.New("mock: resumed while the disk is exposed")
	}
	before := d.status()
	acted := before != "ACTIVE" && d.st.Act("vm/status", "ACTIVE", "resume instance")
	return activities.PowerResult{Instance: req.Instance, Before: before, After: "ACTIVE", Acted: acted}, nil
}

func (d *mockInspector) ExposeInstanceDisk(ctx context.Context, loc activities.DiskLocation) (activities.DiskExposure, error) {
	time.Sleep(work)
	d.st.Act("disk/exported", "yes", "export disk read-only")
	return activities.DiskExposure{Loop: "/dev/loop9", FSType: "ext4", DaemonPID: 4242}, nil
}

func (d *mockInspector) MountGuestFS(ctx context.Context, req activities.DiskMountRequest) (activities.DiskMountResult, error) {
	time.Sleep(work)
	acted := d.st.Act("disk/mounted", "yes", "mount guest fs")
	return activities.DiskMountResult{MountPoint: req.Location.MountPoint, Options: "ro,noload", Reused: !acted}, nil
}

func (d *mockInspector) ReadGuestFiles(ctx context.Context, req activities.GuestFileRequest) ([]activities.GuestFile, error) {
	time.Sleep(work)
	if d.st.Get("disk/mounted") != "yes" {
		return nil, errors.New("mock: read with nothing mounted")
	}
	out := make([]activities.GuestFile, len(req.Paths))
	for i, p := range req.Paths {
		out[i] = activities.GuestFile{Path: p, Status: activities.FileOK, Size: 12, Bytes: 12, Content: "UUID=0b6f /\n", SHA256: "cd", SHA256Of: "file"}
	}
	return out, nil
}

func (d *mockInspector) UnmountGuestFS(ctx context.Context, loc activities.DiskLocation) (activities.DiskUnmountResult, error) {
	time.Sleep(work)
	was := d.st.Get("disk/mounted") == "yes"
	if was {
		d.st.Act("disk/mounted", "no", "unmount guest fs")
	}
	return activities.DiskUnmountResult{WasMounted: was}, nil
}

func (d *mockInspector) DetachInstanceDisk(ctx context.Context, loc activities.DiskLocation) (activities.DiskDetachResult, error) {
	time.Sleep(work)
	if d.st.Get("disk/mounted") == "yes" {
		return activities.DiskDetachResult{}, temporal.NewApplicationError("still mounted", activities.ErrTypeStillThere)
	}
	if d.st.Get("disk/exported") == "yes" {
		d.st.Act("disk/exported", "no", "detach disk")
		return activities.DiskDetachResult{Loops: []string{"/dev/loop9"}, StoppedDaemon: 4242}, nil
	}
	return activities.DiskDetachResult{}, nil
}

func (d *mockInspector) DiskInspectionState(ctx context.Context, loc activities.DiskLocation) (activities.DiskWorld, error) {
	time.Sleep(work)
	w := activities.DiskWorld{Exported: d.st.Get("disk/exported") == "yes", Mounted: d.st.Get("disk/mounted") == "yes"}
	if w.Exported {
		w.DaemonPID = 4242
		w.Loops = []activities.LoopDevice{{Name: "/dev/loop9", BackFile: loc.Export, RO: true}}
	}
	return w, nil
}

func (d *mockInspector) GetInstance(ctx context.Context, id string) (activities.Instance, error) {
	if theCompute != nil && slices.Contains(instances, id) {
		return theCompute.GetInstance(ctx, id)
	}
	time.Sleep(work)
	return activities.Instance{ID: id, Name: "broken-vm", Status: d.status(), Host: d.host}, nil
}
