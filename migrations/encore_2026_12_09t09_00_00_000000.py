"""Voice of the customer: surveys (`survey`), every answer (`feedback`), the program's alert address, and
cases that reopen when the follow-up says it was not put right.

- `feedback.source_key` makes an answer once per source: a signed survey link (`link:<message id>`, its
  answer changeable for 7 days: the same row updated), a shop's `POST /v1/feedback` (its idempotency key
  already makes it once; `api:<id>`).
- `category` is the score's band on its scale (NPS 0-10: promoter 9-10, passive 7-8, detractor 0-6; CSAT
  1-5: 4-5, 3, 1-2), written with the score so reports group by it without the rule in SQL.
- `case_id`: the recovery case a detractor's answer opened; `follows_up_case_id`: the closed case a
  follow-up answer is about (still unhappy: it reopens)."""

from sql_migration import script, sql_migration

ID = "2026-12-09T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Surveys and feedback"

FORWARDS = script(
    """
    ALTER TABLE program ADD COLUMN alert_email varchar(320);
    ALTER TABLE service_case ADD COLUMN reopened_count integer NOT NULL DEFAULT 0;
    ALTER TABLE case_entry DROP CONSTRAINT case_entry_kind,
        ADD CONSTRAINT case_entry_kind CHECK (kind IN ('opened', 'note', 'recovery', 'closed', 'reopened'));
    CREATE TABLE survey (
        id uuid PRIMARY KEY,
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        key varchar(64) NOT NULL,
        name varchar(200) NOT NULL,
        kind varchar(8) NOT NULL CONSTRAINT survey_kind CHECK (kind IN ('nps', 'csat')),
        questions jsonb NOT NULL,
        dimensions jsonb NOT NULL DEFAULT '[]'::jsonb,
        send_after varchar(16) NOT NULL CONSTRAINT survey_send_after CHECK (send_after IN ('order', 'delivery')),
        delay_days integer NOT NULL CONSTRAINT survey_delay CHECK (delay_days BETWEEN 0 AND 365),
        alarm_below integer NOT NULL,
        ask_promoters varchar(16) NOT NULL
            CONSTRAINT survey_ask_promoters CHECK (ask_promoters IN ('none', 'review', 'referral')),
        follow_up boolean NOT NULL DEFAULT false,
        status varchar(16) NOT NULL CONSTRAINT survey_status CHECK (status IN ('active', 'archived')),
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        CONSTRAINT survey_key_once UNIQUE (program_id, key)
    );
    CREATE TABLE feedback (
        id uuid PRIMARY KEY,
        program_id uuid NOT NULL REFERENCES program (id) ON DELETE RESTRICT,
        customer_id uuid NOT NULL REFERENCES customer (id) ON DELETE RESTRICT,
        survey_id uuid REFERENCES survey (id) ON DELETE RESTRICT,
        kind varchar(8) NOT NULL CONSTRAINT feedback_kind CHECK (kind IN ('nps', 'csat')),
        score smallint NOT NULL,
        category varchar(16) NOT NULL
            CONSTRAINT feedback_category CHECK (category IN ('promoter', 'passive', 'detractor')),
        dimensions jsonb NOT NULL DEFAULT '{}'::jsonb,
        comment text,
        order_id uuid,
        channel varchar(16) NOT NULL,
        source_key varchar(200) NOT NULL,
        alarm boolean NOT NULL,
        case_id uuid REFERENCES service_case (id) ON DELETE RESTRICT,
        follows_up_case_id uuid REFERENCES service_case (id) ON DELETE RESTRICT,
        answered_at timestamptz NOT NULL,
        changeable_until timestamptz,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        CONSTRAINT feedback_score CHECK (
            (kind = 'nps' AND score BETWEEN 0 AND 10) OR (kind = 'csat' AND score BETWEEN 1 AND 5)),
        CONSTRAINT feedback_once UNIQUE (program_id, source_key)
    );
    CREATE INDEX feedback_report ON feedback (program_id, answered_at) INCLUDE (kind, score, category, alarm);
    CREATE INDEX feedback_customer ON feedback (customer_id, answered_at);
    CREATE INDEX feedback_survey ON feedback (survey_id, answered_at) WHERE survey_id IS NOT NULL;
    CREATE INDEX feedback_case ON feedback (case_id) WHERE case_id IS NOT NULL;
    -- Surveys due after a delivery: the shop's order_delivered events of a program in a time range.
    CREATE INDEX customer_event_program_type ON customer_event (program_id, type, occurred_at);
    -- The staff cap: a program's staff messages sent in the last hour.
    CREATE INDEX message_staff_sent ON message (program_id, sent_at) WHERE category = 'staff' AND status = 'sent';
    CREATE INDEX service_case_closed ON service_case (closed_at) WHERE status = 'closed'
    """
)

BACKWARDS = script(
    """
    DROP INDEX service_case_closed;
    DROP INDEX message_staff_sent;
    DROP INDEX customer_event_program_type;
    DROP TABLE feedback;
    DROP TABLE survey;
    DELETE FROM case_entry WHERE kind = 'reopened';
    ALTER TABLE case_entry DROP CONSTRAINT case_entry_kind,
        ADD CONSTRAINT case_entry_kind CHECK (kind IN ('opened', 'note', 'recovery', 'closed'));
    ALTER TABLE service_case DROP COLUMN reopened_count;
    ALTER TABLE program DROP COLUMN alert_email
    """
)

forwards = sql_migration(ID, DESCRIPTION, FORWARDS, BACKWARDS)
