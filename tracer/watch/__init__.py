"""`snoop watch`: a live view of file activity (open, read, write, close, exec, stat ...),
filtered in the kernel where it can be, on the tracer's own BPF program and loader."""
