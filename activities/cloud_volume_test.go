package activities

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/stackrun/stackrun/internal/infra/openstack"
)

func TestVolumeServicesUpWantsAReportSinceTheStart(t *testing.T) {
	start := time.Date(2026, 12, 1, 19, 0, 0, 500e6, time.UTC)
	svc := func(bin, host, state string, updated time.Time) openstack.VolumeService {
		return openstack.VolumeService{Binary: bin, Host: host, State: state, Status: "enabled", UpdatedAt: updated}
	}
	p := APIProbe{Kind: "volume-services", Host: "controller", Binaries: []string{"cinder-scheduler", "cinder-volume"}, Since: start}
	after := start.Add(3 * time.Second)
	for _, c := range []struct {
		name string
		all  []openstack.VolumeService
		ok   bool
		want string
	}{
		{"both up since", []openstack.VolumeService{svc("cinder-scheduler", "controller", "up", after), svc("cinder-volume", "controller@fake", "up", after)},
			true, "cinder-scheduler on controller, cinder-volume on controller@fake"},
		{"same second counts (whole seconds)", []openstack.VolumeService{svc("cinder-scheduler", "controller", "up", start.Truncate(time.Second)), svc("cinder-volume", "controller@fake", "up", after)},
			true, "volume services up"},
		{"volume still on its report from before the stop", []openstack.VolumeService{svc("cinder-scheduler", "controller", "up", after), svc("cinder-volume", "controller@fake", "up", start.Add(-20*time.Second))},
			false, "cinder-volume on controller@fake has not reported since its start"},
		{"volume down", []openstack.VolumeService{svc("cinder-scheduler", "controller", "up", after), svc("cinder-volume", "controller@fake", "down", after)},
			false, "cinder-volume on controller@fake is down"},
		{"volume of another host only", []openstack.VolumeService{svc("cinder-scheduler", "controller", "up", after), svc("cinder-volume", "controller2@fake", "up", after)},
			false, "no cinder-volume service registered for host controller"},
	} {
		res := volumeServicesUp(c.all, p)
		assert.Equal(t, c.ok, res.OK, c.name)
		assert.Contains(t, res.Detail, c.want, c.name)
	}
	dis := svc("cinder-scheduler", "controller", "up", after)
	dis.Status, dis.DisabledReason = "disabled", "maintenance"
	res := volumeServicesUp([]openstack.VolumeService{dis}, APIProbe{Host: "controller", Binaries: []string{"cinder-scheduler"}})
	assert.False(t, res.OK)
	assert.Contains(t, res.Detail, "disabled: maintenance")
}
