//go:build unix

package diskfree

import "golang.org/x/sys/unix"

// free is the space under dir that an unprivileged writer may use.
func free(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
