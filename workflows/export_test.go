package workflows

// SetOutageSlice makes outage-recovery's slices n long (outageSlice) until restore: a test sets
// it before its worker starts and restores it after the worker stopped.
func SetOutageSlice(n int) (restore func()) {
	old := outageSlice
	outageSlice = n
	return func() { outageSlice = old }
}
