"""Service recovery and cases: what staff gave to put things right (`recovery`), the program's monthly
recovery budget and tier prices (`recovery_settings`), and the cases that tell a customer's story
(`service_case`, its timeline `case_entry`).

- A recovery's cost is written on its row, in the program's base currency and the budget month (program
  time zone) it was spent in; what a month used is the sum of its rows, read under the lock of the
  program's `recovery_settings` row, so concurrent recoveries never overspend a budget.
- `service_case.source_key` (`complaint:<event id>`, `feedback:<id>`) opens one case per complaint or
  feedback, however often it is retried. `first_action_at`: the first note, recovery or status change by a
  person; the case's `agent` is the key that opened it or first acted on it.
- A gift given as a recovery is a `gift` row with outcome `recovery` (no dice, no hold-out, not the gift
  rule's budget: the recovery budget pays; the effect stats leave it out)."""

from sql_migration import script, sql_migration

ID = "2026-12-08T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Service recovery and cases"

FORWARDS = script(
    """
    ALTER TABLE gift DROP CONSTRAINT gift_outcome,
        ADD CONSTRAINT gift_outcome CHECK (outcome IN ('granted', 'held_out', 'recovery'));
    CREATE TABLE recovery_settings (
        program_id uuid PRIMARY KEY REFERENCES program (id) ON DELETE RESTRICT,
        monthly_budget bigint NOT NULL DEFAULT 0 CONSTRAINT recovery_monthly_budget CHECK (monthly_budget >= 0),
        agent_monthly_budget bigint CONSTRAINT recovery_agent_budget CHECK (agent_monthly_budget >= 0),
        tier_month_values jsonb NOT NULL DEFAULT '{}'::jsonb,
        updated_at timestamptz NOT NULL
    );
    CREATE TABLE service_case (
        id uuid PRIMARY KEY,
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        customer_id uuid NOT NULL REFERENCES customer (id) ON DELETE RESTRICT,
        status varchar(16) NOT NULL CONSTRAINT service_case_status CHECK (status IN ('open', 'closed')),
        source varchar(16) NOT NULL CONSTRAINT service_case_source CHECK (source IN ('complaint', 'feedback', 'agent')),
        source_key varchar(200),
        summary text NOT NULL,
        order_id uuid,
        agent_key_id uuid,
        agent_name varchar(200),
        opened_at timestamptz NOT NULL,
        first_action_at timestamptz,
        closed_at timestamptz,
        resolution text,
        created_at timestamptz NOT NULL,
        CONSTRAINT service_case_once UNIQUE (program_id, source_key)
    );
    CREATE INDEX service_case_list ON service_case (program_id, opened_at, id);
    CREATE INDEX service_case_status ON service_case (program_id, status, opened_at, id);
    CREATE INDEX service_case_agent ON service_case (program_id, agent_key_id, opened_at, id);
    CREATE INDEX service_case_customer ON service_case (customer_id, opened_at, id);
    CREATE TABLE case_entry (
        id bigserial PRIMARY KEY,
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        case_id uuid NOT NULL REFERENCES service_case (id) ON DELETE RESTRICT,
        kind varchar(16) NOT NULL CONSTRAINT case_entry_kind CHECK (kind IN ('opened', 'note', 'recovery', 'closed')),
        text text NOT NULL,
        recovery_id uuid,
        by_key_id uuid,
        by_name varchar(200),
        at timestamptz NOT NULL
    );
    CREATE INDEX case_entry_case ON case_entry (case_id, id);
    CREATE TABLE recovery (
        id uuid PRIMARY KEY,
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        customer_id uuid NOT NULL REFERENCES customer (id) ON DELETE RESTRICT,
        case_id uuid REFERENCES service_case (id) ON DELETE RESTRICT,
        order_id uuid,
        complaint_event_id uuid,
        agent_key_id uuid NOT NULL,
        agent_name varchar(200) NOT NULL,
        reason text NOT NULL,
        action varchar(16) NOT NULL CONSTRAINT recovery_action CHECK (action IN ('points', 'reward', 'gift', 'tier')),
        given jsonb NOT NULL,
        explanation text NOT NULL,
        cost_amount bigint NOT NULL CONSTRAINT recovery_cost CHECK (cost_amount >= 0),
        currency varchar(3) NOT NULL,
        budget_period varchar(16) NOT NULL,
        created_at timestamptz NOT NULL
    );
    CREATE INDEX recovery_budget ON recovery (program_id, budget_period, agent_key_id) INCLUDE (cost_amount);
    CREATE INDEX recovery_case ON recovery (case_id) INCLUDE (cost_amount) WHERE case_id IS NOT NULL
    """
)

BACKWARDS = script(
    """
    DROP TABLE recovery;
    DROP TABLE case_entry;
    DROP TABLE service_case;
    DROP TABLE recovery_settings;
    DELETE FROM gift WHERE outcome = 'recovery';
    ALTER TABLE gift DROP CONSTRAINT gift_outcome,
        ADD CONSTRAINT gift_outcome CHECK (outcome IN ('granted', 'held_out'))
    """
)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
