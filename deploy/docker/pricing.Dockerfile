# The worker image of the pricing example (examples/pricing): one static
# binary from scratch, built by `make images` with bin/ as the context:
#
#   docker build -f deploy/docker/pricing.Dockerfile -t gridd-pricing:dev bin
#
# A worker keeps nothing on disk, so it needs no volume.
FROM scratch
COPY pricing /
ENTRYPOINT ["/pricing"]
CMD ["worker"]
