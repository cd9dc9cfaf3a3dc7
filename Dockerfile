# Snoop: tracer, processor and reporter in one image. `snoop run` (the default command)
# runs all three under supervisord: the simple sidecar. `snoop tracer`, `snoop processor`
# and `snoop reporter` run one each: the split-privilege layout. `snoop receive` is the
# central receiver the reporters push to (docs/receiver.md).
#
# Kernel headers are NOT in the image: bcc compiles the BPF program at start against the
# headers of the kernel it runs on, so mount the host's /lib/modules and /usr/src
# read-only at the same paths. Capabilities, mounts and target modes:
# docs/deployment.md; a working example: docker-compose.yaml.
#
# Builds from Debian packages and PyPI only. Without a registry, make the base image
# first: scripts/docker-up.sh imports a debootstrap'ed bookworm minbase under this name.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS runtime
# bcc's Python module is Debian's (python3-bpfcc, in dist-packages): the venv below is
# made with --system-site-packages to see it, so the interpreter must be Debian's too.
# ca-certificates: the reporter may push reports to an https:// endpoint.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-bpfcc python3-venv bpftool ca-certificates \
    && rm -rf /var/lib/apt/lists/*

FROM runtime AS build
# A TLS-inspecting proxy's CA, when the build needs one (see the folder's README).
COPY deploy/ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates >/dev/null
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# Dependencies first, from pyproject.toml alone: a source change does not re-download them.
COPY pyproject.toml /src/pyproject.toml
RUN /usr/bin/python3 -m venv --system-site-packages /opt/snoop \
    && /opt/snoop/bin/python -c "import tomllib; \
project = tomllib.load(open('/src/pyproject.toml', 'rb')); \
print('\n'.join(project['project']['dependencies']))" > /tmp/requirements.txt \
    && /opt/snoop/bin/pip install -q -r /tmp/requirements.txt "setuptools>=68" wheel
COPY snoop_pkg /src/snoop_pkg
COPY cli /src/cli
COPY common /src/common
COPY tracer /src/tracer
COPY processor /src/processor
COPY reporter /src/reporter
COPY receiver /src/receiver
COPY slim /src/slim
RUN /opt/snoop/bin/pip install -q --no-deps --no-build-isolation /src

FROM runtime
COPY --from=build /opt/snoop /opt/snoop
ENV PATH=/opt/snoop/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    SNOOP_REPORT_PATH=/data/snoop-report.json \
    SNOOP_RUN_DIR=/run/snoop
RUN python -c "import bcc, snoop.tracer.compiler, snoop.tracer.kernel" && mkdir -p /data /run/snoop
# Reports (SNOOP_REPORT_PATH, or SNOOP_REPORT_DIR in node mode).
VOLUME ["/data"]

# Healthy when /readyz answers on each of SNOOP_HEALTH_PORTS ports from
# SNOOP_METRICS_ADDR's port on: 3 for `snoop run` (tracer, processor, reporter); set
# SNOOP_HEALTH_PORTS=1 for a container that runs one process.
HEALTHCHECK --interval=2s --timeout=3s --start-period=300s --retries=3 CMD ["python", "-c", "\
import os, urllib.request as u; \
h, _, p = os.environ.get('SNOOP_METRICS_ADDR', '127.0.0.1:9090').rpartition(':'); \
h = '127.0.0.1' if h in ('', '0.0.0.0') else h; \
[u.urlopen(f'http://{h}:{int(p) + i}/readyz', timeout=2) \
 for i in range(int(os.environ.get('SNOOP_HEALTH_PORTS', '3')))]"]

ENTRYPOINT ["snoop"]
CMD ["run"]
