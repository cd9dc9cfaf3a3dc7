"""A workload for the capture tests: touches known files in every way the tracer hooks.

Run inside a test cgroup as `python3 workload.py BASE`; BASE was prepared by the test
(see test_capture.prepare_tree). Prints nothing; exits 0 when every step ran.
"""

import os
import subprocess
import sys

base = sys.argv[1]
bbase = base.encode()

with open(f"{base}/read.txt") as f:  # open for reading
    f.read()
with open(f"{base}/written.txt", "w") as f:  # open for writing
    f.write("x")
os.stat(f"{base}/stat.txt")  # stat
os.lstat(f"{base}/link")  # lstat
os.access(f"{base}/access.txt", os.R_OK)  # access check
os.readlink(f"{base}/link")  # readlink
subprocess.run([f"{base}/prog.sh"], check=True)  # exec (a #! script)
with open(open(f"{base}/long-path.txt").read().strip()) as f:  # a path of 4000 bytes
    f.read()
with open(bbase + b"/caf\xe9-\xff.txt", "rb") as f:  # a name that is not UTF-8
    f.read()
os.chdir(base)
with open("rel.txt") as f:  # relative to the cwd
    f.read()
with open("sub/../rel2.txt") as f:  # relative, with ..
    f.read()
dirfd = os.open(f"{base}/sub", os.O_RDONLY | os.O_DIRECTORY)
os.close(os.open("dirfd.txt", os.O_RDONLY, dir_fd=dirfd))  # openat(dirfd, "name")
os.stat("dirfd-stat.txt", dir_fd=dirfd)  # fstatat(dirfd, "name")
os.close(dirfd)
os.chdir("sub")
with open("after-chdir.txt") as f:  # relative to a cwd set by chdir
    f.read()
