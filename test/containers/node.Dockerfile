# Node for the ptctl image's NODE_IMAGE in the local profile: this machine's node, npm and CA bundle (the
# build context, staged under .cache/containers/node/) on the debootstrap base. The CA bundle is the one
# this machine's own npm trusts, so the ptctl build stage's `npm ci` reaches the registry the same way.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s /usr/local/lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx
