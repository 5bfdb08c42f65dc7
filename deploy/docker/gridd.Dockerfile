# The gridd node image: the static gridd and gridctl binaries and nothing
# else. No base image can be pulled here, so it starts from scratch; `make
# images` builds the binaries (CGO_ENABLED=0) on the host first and uses bin/
# as the build context:
#
#   docker build -f deploy/docker/gridd.Dockerfile -t gridd:dev bin
#
# scratch has no shell, no /tmp and no CA certificates: gridd needs none of
# them, only a writable data dir, which docker-compose.yml mounts as a volume
# at /data.
FROM scratch
COPY gridd gridctl /
# The queue API, the Raft transport and the metrics port; as `gridd
# nodecache` (docker-compose.yml), the node cache's API, memberlist and
# metrics ports.
EXPOSE 1337 7337 8080 3337 7946 8082
VOLUME /data
ENTRYPOINT ["/gridd"]
CMD ["--data-dir", "/data", "--grpc-addr", "0.0.0.0:1337", "--raft-addr", "0.0.0.0:7337", "--metrics-addr", "0.0.0.0:8080"]
