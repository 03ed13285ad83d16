# nats-server for the local profile and PTC_TEST_STACK=containers: the pinned static binary from
# .tools/bin (the build context) on the debootstrap base, whose bash lets compose run a health check.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY nats-server /usr/local/bin/nats-server
ENTRYPOINT ["/usr/local/bin/nats-server"]
