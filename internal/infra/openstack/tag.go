package openstack

import (
	"net/http"
	"net/url"
	"strconv"

	"go.temporal.io/sdk/activity"
)

// ActivityHeader names, on every API request an activity makes, the run and the activity attempt
// it belongs to (URL-query encoded: type, run, activity, attempt). An operator reading an API's
// access log can tell which run called; the fault proxy of the reliability suite counts faults and
// retries per runbook by it (internal/testenv/faultproxy).
const ActivityHeader = "X-Stackrun-Activity"

// tagActivity adds ActivityHeader to requests made from an activity's context.
type tagActivity struct{ next http.RoundTripper }

func (t tagActivity) RoundTrip(r *http.Request) (*http.Response, error) {
	if !activity.IsActivity(r.Context()) {
		return t.next.RoundTrip(r)
	}
	info := activity.GetInfo(r.Context())
	v := url.Values{}
	if info.WorkflowType != nil {
		v.Set("type", info.WorkflowType.Name)
	}
	v.Set("run", info.WorkflowExecution.ID)
	v.Set("activity", info.ActivityID)
	v.Set("attempt", strconv.Itoa(int(info.Attempt)))
	r = r.Clone(r.Context()) // a RoundTripper must not change the caller's request
	r.Header.Set(ActivityHeader, v.Encode())
	return t.next.RoundTrip(r)
}
