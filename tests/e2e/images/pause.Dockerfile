# The pod sandbox image (registry.k8s.io/pause:3.10 on the local cluster): tests/rig/pause.c,
# compiled static by rig.images into the build context beside this file. Nothing else in it.
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
