# Names with any byte in them (high bytes, spaces, a newline, quotes, a backslash,
# 250 bytes long), reached by globbing, in a directory with such a name too.
cd names || exit 1
for f in *; do
    if [ -d "$f" ]; then
        cat -- "$f"/* >/dev/null
    else
        cat -- "$f" >/dev/null
    fi
done
stat -- * >/dev/null
cd -- *' dir'* && cat -- * >/dev/null
