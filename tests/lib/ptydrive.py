#!/usr/bin/env python3
"""ptydrive.py: runs a command on a new pseudo-terminal and drives it as a person would.

usage: ptydrive.py STEP... -- COMMAND [ARG...]
steps, in order:
  expect:TEXT    wait (60 s at most) until TEXT has appeared since the last expect
  send:TEXT      type TEXT (backslash escapes: \\r, \\x03 for Ctrl-C, ...)
  sleep:SECONDS
  resize:ROWS,COLS   resize the terminal (the command gets SIGWINCH)
Prints what the command wrote, then "ptydrive: exit N" (N its exit status). A step that
times out prints "ptydrive: timeout waiting for TEXT" and exits 3 after killing the command.
"""
import codecs
import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time


def main(argv):
    if "--" not in argv:
        sys.exit(__doc__)
    cut = argv.index("--")
    steps, cmd = argv[:cut], argv[cut + 1:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(cmd[0], cmd)
    seen = b""

    def pump(timeout):
        """Reads what has come within timeout: None when nothing, False at end of file."""
        nonlocal seen
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            return None
        try:
            data = os.read(fd, 65536)
        except OSError:
            return False
        if not data:
            return False
        sys.stdout.write(data.decode(errors="replace"))
        seen += data
        return True

    for step in steps:
        kind, _, arg = step.partition(":")
        if kind == "expect":
            want = codecs.decode(arg, "unicode_escape").encode()
            end = time.time() + 60
            while want not in seen:
                if time.time() > end or pump(0.2) is False:
                    if want in seen:
                        break
                    print("\nptydrive: timeout waiting for %r" % arg)
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    return 3
            seen = seen[seen.index(want) + len(want):]
        elif kind == "send":
            os.write(fd, codecs.decode(arg, "unicode_escape").encode())
        elif kind == "sleep":
            end = time.time() + float(arg)
            while time.time() < end and pump(0.05) is not False:
                pass
        elif kind == "resize":
            rows, cols = (int(x) for x in arg.split(","))
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        else:
            sys.exit("ptydrive: unknown step %r" % step)
    end = time.time() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.time() > end:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        if pump(0.2) is False:
            time.sleep(0.05)
    while pump(0):  # what is left, until nothing comes (another process may hold the terminal)
        pass
    print("\nptydrive: exit %d" % os.waitstatus_to_exitcode(status))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
