# The Temporal dev server (`temporal server start-dev`) from the pinned static binary in .tools/bin (the
# build context), standing in for the PostgreSQL-backed server locally. The CLI needs USER, HOME and a /tmp.
FROM scratch
COPY temporal /temporal
ENV USER=temporal HOME=/tmp
WORKDIR /tmp
ENTRYPOINT ["/temporal"]
