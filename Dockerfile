# syntax=docker/dockerfile:1
# The nestjs-spoe example agent. `docker compose up --build` runs it with HAProxy 3.2, Redis and a backend.

# --- build: compile the library and the agent, then keep only the production dependencies ---
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.base.json tsconfig.app.json ./
COPY libs/spoe/package.json libs/spoe/tsconfig.lib.json libs/spoe/
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY libs/spoe/src libs/spoe/src
COPY src src
RUN npm run build && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime: compiled JavaScript and production dependencies, run as the unprivileged `node` user ---
FROM node:22-bookworm-slim
ENV NODE_ENV=production \
    SPOE_PORT=12345 \
    HTTP_PORT=3000
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules node_modules
COPY --from=build /app/libs/spoe/package.json libs/spoe/
COPY --from=build /app/libs/spoe/dist libs/spoe/dist
COPY --from=build /app/dist dist
USER node
EXPOSE 12345 3000
# A real SPOP health-check HELLO, as HAProxy's `option spop-check` does (exit 0 healthy, 1 not). Over TLS when
# SPOE_TLS_CERT is set: the agent's certificate must name localhost (the README's does) and is verified against
# SPOE_TLS_CA, or without it against Node's CAs and NODE_EXTRA_CA_CERTS; under mutual TLS the check presents the agent's
# own certificate, as /health/ready does.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD node libs/spoe/dist/cli/spoe-health.js --port "${SPOE_PORT}" --timeout 2000 --quiet \
        ${SPOE_TLS_CERT:+--tls --servername localhost} \
        ${SPOE_TLS_CA:+--ca "$SPOE_TLS_CA" --cert "$SPOE_TLS_CERT" --key "$SPOE_TLS_KEY"}
# SIGTERM: readiness turns 503, SPOE serves SHUTDOWN_GRACE_MS more, then drains and exits 0.
STOPSIGNAL SIGTERM
CMD ["node", "dist/main.js"]
