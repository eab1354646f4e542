package procs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
)

// tailBytes bounds how much of a log file Tail reads.
const tailBytes = 64 << 10

// rotateIfNeeded rotates path when it has reached maxSize bytes: path.N-1
// becomes path.N (the oldest falls off), the content is copied to path.1 and
// path is truncated in place, so that a process appending to it keeps
// writing to the current file.
func rotateIfNeeded(path string, maxSize int64, maxFiles int) (bool, error) {
	if maxSize < 0 {
		return false, nil
	}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("rotate log: %w", err)
	}
	if fi.Size() < maxSize {
		return false, nil
	}
	// Copy first and truncate right after the copy returns: only output
	// written in between is lost. Shifting the older files happens after.
	tmp := path + ".rotating"
	if err := copyFile(path, tmp); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("rotate log %s: %w (check free disk space)", path, err)
	}
	if err := os.Truncate(path, 0); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("rotate log %s: %w", path, err)
	}
	os.Remove(path + "." + strconv.Itoa(maxFiles))
	for i := maxFiles - 1; i >= 1; i-- {
		os.Rename(path+"."+strconv.Itoa(i), path+"."+strconv.Itoa(i+1))
	}
	if err := os.Rename(tmp, path+".1"); err != nil {
		return false, fmt.Errorf("rotate log %s: %w", path, err)
	}
	return true, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Tail returns the last n lines of logFile, reaching into logFile.1 when the
// current file holds fewer (it was just rotated). It reads at most 64 KiB of
// each file, and returns nil when there is no log.
func Tail(logFile string, n int) []string {
	if n <= 0 || logFile == "" {
		return nil
	}
	lines := tailLines(logFile, n)
	if len(lines) < n {
		older := tailLines(logFile+".1", n-len(lines))
		lines = append(older, lines...)
	}
	return lines
}

func tailLines(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	off := max(fi.Size()-tailBytes, 0)
	buf := make([]byte, fi.Size()-off)
	k, _ := f.ReadAt(buf, off)
	buf = buf[:k]
	if off > 0 {
		// Drop the partial first line.
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	buf = bytes.TrimRight(buf, "\n")
	if len(buf) == 0 {
		return nil
	}
	all := bytes.Split(buf, []byte("\n"))
	if len(all) > n {
		all = all[len(all)-n:]
	}
	out := make([]string, len(all))
	for i, l := range all {
		out[i] = string(l)
	}
	return out
}
