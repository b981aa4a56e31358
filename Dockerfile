# Ficus container image. docs/production.md tells how to run it; test/e2e/dockerfile.test.ts
# performs these same steps without Docker (it parses this file), so keep to the instructions
# it knows: FROM … AS, WORKDIR, COPY [--from], RUN [--mount=type=cache], ENV, VOLUME, USER,
# EXPOSE, STOPSIGNAL, HEALTHCHECK, CMD.
#
# Base: node:20.20.2-bookworm-slim in both stages: Node 20 LTS (package.json engines:
# >=20.18.1), the release CI's tests run on; Debian slim has no curl, so the health check
# uses node itself. Bump the tag with Node's security releases.

FROM node:20.20.2-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
# --ignore-scripts: `prepare` runs tsc, and the sources come in the next layer, so that this
# one (all dependencies, dev ones included) is rebuilt only when the lockfile changes. The
# cache mount keeps npm's download cache out of the image and across builds.
RUN --mount=type=cache,target=/root/.npm npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
COPY demo ./demo
# dist/src (the proxy), dist/demo (the demo backends compose runs), dist/package.json
RUN npm run build

FROM node:20.20.2-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; --ignore-scripts because `prepare` needs tsc, a dev dependency.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --ignore-scripts --no-audit --no-fund
COPY --from=build /app/dist ./dist
COPY deploy/routes.yaml /etc/ficus/routes.yaml
# The state file (runtime changes, audit log) is the only thing Ficus writes: its directory
# belongs to the image's non-root user (node, uid 1000) and is a volume, so the root
# filesystem can be read-only and a rollback survives a new container.
RUN mkdir -p /var/lib/ficus && chown node:node /var/lib/ficus
VOLUME /var/lib/ficus
USER node
# 8080 traffic, 9090 admin (/metrics, /healthz, /readyz, /admin): routes.yaml's listen and admin ports.
EXPOSE 8080 9090
# Ficus drains on SIGTERM: /readyz fails, traffic is served for shutdown.drainDelay, requests
# in flight finish, exit 0 (docker stop's default 10 s is short of shutdown.timeout: use --time).
STOPSIGNAL SIGTERM
# /healthz answers while the process can answer at all. No --start-period: Ficus listens within
# a second (and dockerfilelint 1.8.0 misreads that option's name).
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["node", "-e", "fetch('http://127.0.0.1:9090/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/src/cli.js", "start", "--config", "/etc/ficus/routes.yaml"]
