# poetry in a container: Deno's distroless image (no shell, no package
# manager), a non-root user, and only the permissions the server needs.
#
#   docker build -t poetry .
#   docker run --rm -p 10000:10000 -p 9100:9100 poetry
#   docker run --rm -p 10000:10000 -v "$PWD/my-poems:/poems:ro" poetry \
#     --iface 0.0.0.0 --port 10000 --admin 0.0.0.0:9100 /poems
#
# Stop it with `docker stop -t 20` (above --drain-timeout, 10 s by default):
# SIGTERM drains the transfers in flight, then it exits 0.

ARG DENO_VERSION=2.9.6

# Fetch the dependencies once, at build time; the image runs --cached-only.
FROM denoland/deno:debian-${DENO_VERSION} AS build
ENV DENO_DIR=/deno-dir
WORKDIR /app
COPY deno.json deno.lock LICENSE main.ts ./
COPY cli/ cli/
COPY lib/ lib/
COPY poems/ poems/
COPY deploy/healthcheck.ts deploy/healthcheck.ts
RUN deno cache --frozen main.ts lib/scale/worker_main.ts deploy/healthcheck.ts

FROM denoland/deno:distroless-${DENO_VERSION}
ENV DENO_DIR=/deno-dir DENO_NO_UPDATE_CHECK=1 DENO_NO_PROMPT=1
# Owned by root and read-only to the server: it cannot change its own code.
COPY --from=build /deno-dir /deno-dir
COPY --from=build /app /app
WORKDIR /app
# distroless's "nonroot" user.
USER 65532:65532
EXPOSE 10000 9100
# The poems are read from /poems when one is mounted, else the samples.
# --allow-net names the one address the server listens on (both ports).
ENTRYPOINT ["/bin/deno", "run", "--cached-only", "--allow-read=/app/poems,/poems,/app/lib,/app/deno.json", "--allow-net=0.0.0.0", "main.ts"]
CMD ["--iface", "0.0.0.0", "--port", "10000", "--admin", "0.0.0.0:9100", "--log-format", "json", "/app/poems"]
# /healthz answers 503 while draining, so an orchestrator stops sending
# clients as soon as a stop begins. The probe reads the server's (PID 1's)
# command line and asks the address its --admin names, whatever the CMD; a
# CMD without --admin has nothing to ask, and is healthy while it runs.
# --allow-all: Deno lets a program read another process's /proc/PID/cmdline
# only with it (not with --allow-read=/proc/1/cmdline); the probe reads that
# one file and asks one URL, as the same unprivileged user.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/bin/deno", "run", "--cached-only", "--allow-all", "deploy/healthcheck.ts", "1"]
STOPSIGNAL SIGTERM
