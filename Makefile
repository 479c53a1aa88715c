# The two commands a newcomer needs: `make up` runs the platform, `make test` runs every test.
# Both work on a fresh machine: they install what is missing (uv, Java, Maven, PostgreSQL),
# start a real Apache Kafka broker and PostgreSQL server, and use them.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never

# uv is looked for (and installed when missing) the first time a recipe needs it, not each
# time make reads this file: `make help` installs nothing. Processes started by `uv run` find
# it in their UV variable (uv sets it); scripts run straight from a recipe are given it.
UV = $(eval UV := $$(shell deploy/local/bootstrap.sh))$(UV)
RUN = $(UV) run --frozen
PYTEST = $(RUN) pytest -p no:cacheprovider
INFRA_ENV := eval "$$(deploy/local/infra.sh env)"
SERVICES := timeslots booking reminders
COVERAGE_MIN := 95

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.PHONY: sync
sync: ## install the Python dependencies (uv workspace, locked)
	$(UV) sync --frozen

.PHONY: infra-up infra-down infra-status
infra-up: ## start Kafka and PostgreSQL (natively, or with Docker where an engine answers)
	deploy/local/infra.sh up
infra-down: ## stop Kafka and PostgreSQL
	deploy/local/infra.sh down
infra-status: ## is the infrastructure up?
	deploy/local/infra.sh status

.PHONY: up down status
up: sync infra-up ## run the platform: infrastructure, migrations, the three services (development mode)
	UV="$(UV)" deploy/local/services.sh start

down: ## stop everything `make up` started
	deploy/local/services.sh stop
	deploy/local/infra.sh down

status: ## are the services ready, how far behind is each consumer group, whose infrastructure is in use?
	deploy/local/services.sh status

.PHONY: reset
reset: ## a clean slate: stop everything `make up` started and delete this checkout's Kafka and PostgreSQL data
	deploy/local/services.sh stop
	deploy/local/infra.sh reset

.PHONY: seed
seed: sync infra-up ## rooms in four time zones with schedules and a month of slots, to start from (run again: nothing new)
	$(INFRA_ENV); $(RUN) timeslots seed

.PHONY: token
token: ## print a development token the services of `make up` accept: make token SUB=alice [ROLE=admin]
	@[ -n "$(SUB)" ] || { echo 'make token SUB=<user id> [ROLE=admin]: name the user (SUB)' >&2; exit 2; }
	@BOOKING_DEVELOPMENT=$${BOOKING_DEVELOPMENT:-true} $(RUN) booking token '$(SUB)' $(foreach r,$(ROLE),--role '$(r)')

.PHONY: lint
lint: sync ## ruff, mypy, the import contracts, the freshness of the event schemas, AsyncAPI and OpenAPI documents, the AsyncAPI parser, the alert rules (promtool)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy  # the paths: [tool.mypy] files in pyproject.toml
	$(RUN) lint-imports  # the import contracts: [tool.importlinter] in pyproject.toml
	$(RUN) python -m platform_tooling.event_schemas docs/events --check
	$(RUN) python -m platform_tooling.asyncapi docs/asyncapi $(SERVICES) --check
	$(RUN) python -m platform_tooling.openapi docs/openapi $(SERVICES) --check
	command -v promtool >/dev/null 2>&1 || bash -c 'COMPONENT=lint; . deploy/local/lib.sh; apt_install prometheus'
	promtool check config deploy/observability/prometheus.yml
	promtool test rules deploy/observability/alerts.test.yml
	command -v npm >/dev/null 2>&1 || bash -c 'COMPONENT=lint; . deploy/local/lib.sh; apt_install nodejs npm'
	cd tooling/asyncapi-parser && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error && node check.mjs ../../docs/asyncapi/*.json

.PHONY: schemas
schemas: ## regenerate the event schemas (docs/events), AsyncAPI (docs/asyncapi) and OpenAPI (docs/openapi)
	$(RUN) python -m platform_tooling.event_schemas docs/events
	$(RUN) python -m platform_tooling.asyncapi docs/asyncapi $(SERVICES)
	$(RUN) python -m platform_tooling.openapi docs/openapi $(SERVICES)

.PHONY: test test-fast test-contracts test-tooling coverage-tooling test-runtime $(foreach s,$(SERVICES),test-$(s)) test-api test-e2e
test: sync infra-up lint ## every test, against real Kafka and PostgreSQL, with coverage
	$(MAKE) --no-print-directory -j2 --output-sync=recurse UV="$(UV)" test-lane-platform test-lane-parts
	$(MAKE) --no-print-directory UV="$(UV)" coverage-tooling

# The two lanes of `make test`, side by side (each prints its output when it ends, and runs
# its suites one after another: -j1, about which make warns, harmlessly). The e2e
# suite mostly waits on its processes and timers, on a Kafka and a PostgreSQL of its own;
# the other lane uses the ones `infra-up` started. Each lane picks its servers' ports from a
# range of its own (tests/support/ports.py), so neither takes a port the other has picked.
.PHONY: test-lane-platform test-lane-parts
test-lane-platform:
	TEST_PORT_RANGE=20000-25999 $(MAKE) --no-print-directory -j1 UV="$(UV)" test-tooling test-e2e
test-lane-parts:
	TEST_PORT_RANGE=26000-31999 $(MAKE) --no-print-directory -j1 UV="$(UV)" \
		test-contracts test-runtime $(foreach s,$(SERVICES),test-$(s)) test-api

test-fast: sync ## the unit tests of every package: no Kafka, no PostgreSQL, well under a minute
	$(PYTEST) -q contracts/tests/unit runtime/tests/unit $(foreach s,$(SERVICES),services/$(s)/tests/unit) tooling/tests/unit

test-contracts: ## the event contract's tests (contracts/), with coverage; no infrastructure
	COVERAGE_FILE=.run/coverage/contracts $(PYTEST) contracts/tests \
		--cov=booking_contracts --cov-report=term-missing:skip-covered --cov-fail-under=$(COVERAGE_MIN)

test-tooling: ## the tooling's own tests (tooling/), no infrastructure; its coverage is judged after test-e2e
	COVERAGE_FILE=.run/coverage/tooling $(PYTEST) tooling/tests --cov=platform_tooling --cov-report=

coverage-tooling: ## the tooling's coverage over its own tests and the e2e tests (the demo and the client run there)
	COVERAGE_FILE=.run/coverage/tooling $(RUN) coverage report --include='tooling/*' \
		--show-missing --skip-covered --fail-under=$(COVERAGE_MIN)

test-runtime: ## the kernel's tests (runtime/), with coverage
	$(INFRA_ENV); COVERAGE_FILE=.run/coverage/runtime $(PYTEST) runtime/tests \
		--cov=platform_runtime --cov-report=term-missing:skip-covered --cov-fail-under=$(COVERAGE_MIN)

$(foreach s,$(SERVICES),test-$(s)): test-%:
	$(INFRA_ENV); COVERAGE_FILE=.run/coverage/$* $(PYTEST) services/$*/tests \
		--cov=$* --cov-report=term-missing:skip-covered --cov-fail-under=$(COVERAGE_MIN)

test-api: ## schemathesis against each service's OpenAPI document; authentication and authorization
	$(INFRA_ENV); $(PYTEST) tests/api

test-e2e: ## the platform as processes: journeys, faults (kill -9, broker and PostgreSQL restarts), poison
	$(INFRA_ENV); COVERAGE_FILE=.run/coverage/tooling $(PYTEST) tests/e2e \
		--cov=platform_tooling --cov-append --cov-report=

.PHONY: demo
demo: ## a narrated journey through the platform started by `make up` (one to two minutes)
	$(RUN) python -m platform_tooling.demo

.PHONY: bench bench-e2e
bench: bench-timeslots bench-reminders bench-booking bench-e2e ## every benchmark, then the table of figures and references
	$(RUN) python -m bench.summary

bench-e2e: sync infra-up ## end to end at 100/300/1,000 offered bookings/s (wrk), 1 and 2 workers per service -> bench/results/e2e.*
	command -v wrk >/dev/null 2>&1 || [ ! -f bench/ensure-wrk.sh ] || bash bench/ensure-wrk.sh
	$(RUN) python -m bench.e2e

.PHONY: bench-timeslots
bench-timeslots: sync infra-up ## benchmark slot generation and search -> bench/results/timeslots.*
	$(INFRA_ENV); $(RUN) python -m bench.timeslots

.PHONY: bench-reminders
bench-reminders: sync infra-up ## benchmark reminder delivery, 10,000 due at once -> bench/results/reminders.*
	$(INFRA_ENV); $(RUN) python -m bench.reminders

.PHONY: bench-booking
bench-booking: sync infra-up ## booking throughput under wrk vs ceilings and pgbench -> bench/results/booking.*
	command -v wrk >/dev/null 2>&1 || bench/ensure-wrk.sh
	$(INFRA_ENV); $(RUN) python -m bench.booking
