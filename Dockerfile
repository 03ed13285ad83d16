# ptctl in one image: the CLI, `ptctl worker` and `ptctl agent --backend sim` (docker-compose.yml).
# Plain Dockerfile syntax (no BuildKit-only features), so Debian's docker.io 20.10 legacy builder builds it too.
#
# The linux agent (`ptctl agent --backend linux`) is not meant to run from this image in compose: it
# needs root on the Xen dom0 itself (sysfs writes, modprobe, xl), so install it on the host with
# deploy/ptctl-agent.service. Everything else runs as the unprivileged user 10001.
#
# NODE_IMAGE: Docker Hub's node image by default. The local profile (test/compose/) passes one made from
# a debootstrap base plus this machine's node, because no image registry is reachable there.
ARG NODE_IMAGE=node:20.19.5-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY bin bin
COPY schemas schemas
COPY policy policy
COPY transport transport
COPY workflows workflows
COPY activities activities
COPY agent agent
COPY observability observability
COPY cli cli
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --no-audit --no-fund --loglevel=error

FROM ${NODE_IMAGE}
ENV NODE_ENV=production HOME=/home/ptctl
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules node_modules
COPY --from=build /src/bin bin
COPY --from=build /src/dist dist
# /state/creds holds the nkey seeds (`ptctl dev --init-only`), /state/hosts the simulated hosts; both owned
# by the runtime user so that compose's named volumes start out writable by it.
RUN ln -s /app/bin/ptctl.js /usr/local/bin/ptctl \
 && mkdir -p /state/creds /state/hosts /home/ptctl \
 && chown -R 10001:10001 /state /home/ptctl
USER 10001:10001
ENTRYPOINT ["ptctl"]
CMD ["--help"]
