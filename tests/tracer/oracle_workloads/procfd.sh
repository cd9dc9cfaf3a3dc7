# cd through magic links: /dev/fd/7 and /proc/self/fd/7 are the directory fd 7 is
# open on, /proc/self/cwd the cwd; bash's logical "cd .." goes back through them.
exec 7<pf/d1 || exit 1
cd /dev/fd/7/sub && cat file >/dev/null || exit 1
cd .. && cat file >/dev/null || exit 1
cd /proc/self/fd/7 && cat sub/file >/dev/null || exit 1
exec 7<&-
cd /proc/self/cwd/sub && cat file >/dev/null
