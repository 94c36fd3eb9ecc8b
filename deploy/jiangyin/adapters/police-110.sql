-- POLICE (公安局 110 指挥中心): the part of the 110 incident database the cpx adapter
-- (sql connector, police.yaml) reads and writes. Idempotent: safe to run again.
--   psql -d police110 -f police-110.sql
-- The adapter's database role needs SELECT on cpx_outgoing_incidents and INSERT on
-- cpx_deliveries, cpx_delivered and cpx_rejected.

CREATE TABLE IF NOT EXISTS incidents_110 (
    id             bigserial PRIMARY KEY,
    incident_no    text NOT NULL UNIQUE,          -- 接警编号, e.g. JY110-20261128-0042
    received_at    timestamptz NOT NULL DEFAULT now(),
    involves_minor boolean NOT NULL DEFAULT true,
    minor_name     text,
    minor_id       text,                          -- 公民身份号码 when known
    sex            char(1),                       -- M / F / U
    birth_date     date,
    town_code      text,                          -- department code of the town office
    address        text,
    officer        text,
    harm_codes     text,                          -- DV,AB,AN,SX,IN,TR,BG
    immediate      boolean NOT NULL DEFAULT false,
    summary        text,
    cpx_seq        bigint UNIQUE                  -- the adapter's cursor, see below
);

-- The cursor must become visible in increasing order: a value committed below one the
-- adapter has already read would never be read. A plain sequence does not promise that
-- with concurrent writers (a later value can commit first), so the value is drawn under
-- a transaction-level advisory lock: the next writer waits until this one has committed.
CREATE SEQUENCE IF NOT EXISTS cpx_incident_seq;
CREATE OR REPLACE FUNCTION cpx_incident_cursor() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(110110);
    NEW.cpx_seq := nextval('cpx_incident_seq');
    RETURN NEW;
END $$;
CREATE OR REPLACE FUNCTION cpx_incident_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cpx_incidents', '');       -- delivered at commit; wakes the adapter
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS cpx_cursor ON incidents_110;
CREATE TRIGGER cpx_cursor BEFORE INSERT ON incidents_110
    FOR EACH ROW EXECUTE FUNCTION cpx_incident_cursor();
DROP TRIGGER IF EXISTS cpx_notify ON incidents_110;
CREATE TRIGGER cpx_notify AFTER INSERT ON incidents_110
    FOR EACH STATEMENT EXECUTE FUNCTION cpx_incident_notify();

-- What goes to the exchange: incidents involving a minor, as text the mapping
-- (police-110.yaml) reads. Times are rendered in the session's time zone, which the
-- adapter sets (sql.timezone, default Asia/Shanghai).
CREATE OR REPLACE VIEW cpx_outgoing_incidents AS
SELECT cpx_seq AS incident_seq,
       incident_no, minor_name, minor_id, sex,
       to_char(birth_date, 'YYYY-MM-DD') AS birth_date,
       town_code, address, officer, harm_codes,
       CASE WHEN immediate THEN '1' ELSE '0' END AS immediate,
       summary,
       to_char(received_at, 'YYYY-MM-DD HH24:MI:SS') AS reported_at
  FROM incidents_110
 WHERE involves_minor AND cpx_seq IS NOT NULL;

-- Deliveries from the exchange (referrals, dispositions, reports routed to POLICE).
-- A row is inserted in the same transaction as its message id in cpx_delivered, whose
-- primary key makes a redelivery insert nothing; the command centre may process and
-- delete rows here without losing that memory.
CREATE TABLE IF NOT EXISTS cpx_deliveries (
    id          bigserial PRIMARY KEY,
    message_id  text NOT NULL,
    delivery_id bigint,
    sender      text,
    case_id     text,
    priority    text,
    body_kind   text,
    delivery    jsonb NOT NULL,                   -- docs/adapters.md, "Deliveries as JSON"
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS cpx_delivered (
    message_id   text PRIMARY KEY,
    delivered_at timestamptz NOT NULL DEFAULT now()
);

-- Rows the exchange refused (mapping errors, the gateway's field errors), for the
-- command centre to correct: row key, cursor and "path: rule: message".
CREATE TABLE IF NOT EXISTS cpx_rejected (
    cursor_value text PRIMARY KEY,
    row_key      text NOT NULL,
    reason       text NOT NULL,
    rejected_at  timestamptz NOT NULL DEFAULT now()
);
