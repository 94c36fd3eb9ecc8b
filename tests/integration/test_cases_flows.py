"""Case tracking through a real gateway and real clients (docs/cases.md), one scenario
per seed flow:
 A. a teacher reports a child whose parents are both detained -> case opened, routed
    to CIVIL_AFFAIRS and the town (the town never sees the reporter or the narrative);
    a second report about the same child links to the case; one without an ID number
    links by name+birth+town and raises MATCH_TO_CONFIRM; assessment HIGH; referrals
    to CIVIL_AFFAIRS (living allowance) and WOMENS_FED (care); wrong-department and
    unknown dispositions refused; dispositions; close refused while a referral is open
    and before a follow-up; the father's ReleaseNotice -> ALLOWANCE_REVIEW; follow-up;
    close; cpxctl case show/list/stats with roles; the audit timeline.
 B. a neighbour reports abuse at night through the hotline -> POLICE must acknowledge
    within the (shortened) deadline; it does not -> Escalation to its supervisor and
    CIVIL_AFFAIRS, repeated; EDUCATION and the town never see the reporter's name.
 C. a second living allowance for the same minor -> DOUBLE_BENEFIT; the one-off
    medical aid refused for an unlisted illness and granted once only.
 E. a town office's referral to WOMENS_FED becomes overdue (escalated), then the town
    office revokes it: revocations by another department, without a reason, or of an
    unknown referral refused; the revocation reaches WOMENS_FED; WOMENS_FED's
    disposition afterwards refused (referral_revoked); the escalation stops; the case
    closes with its only referral revoked.
 D. deadlines survive a restart; aged 16+ with a training need -> referral to HRSS.
Each asserts the case state, what each department received and what was withheld,
and the audit timeline."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpxclient  # noqa: E402

failures = []
DEPTS = ("CIVIL_AFFAIRS", "POLICE", "EDUCATION", "TOWN_HUASHI", "WOMENS_FED", "JUSTICE", "HEALTH",
         "PROCURATORATE", "DISABLED_FED")


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


class World:
    def __init__(self, gw):
        self.gw = gw
        self.S = gw.S
        self.cl = {}
        self.got = {}  # dept -> list of Deliver
        self.gw_pub = cpxclient.load_pub(os.path.join(gw.keys, "GATEWAY.sign.pub"))
        self.pubs = {d: cpxclient.load_pub(os.path.join(gw.keys, d + ".sign.pub")) for d in DEPTS}

    def connect(self, *depts):
        for d in depts:
            self.cl[d] = self.gw.client(d)
            self.got.setdefault(d, [])
            self.cl[d].heartbeat()

    def pump(self, seconds=0.6, confirm=True):
        """Collects (and confirms) deliveries of every connected department."""
        end = time.time() + seconds
        while time.time() < end:
            for d, c in self.cl.items():
                c.heartbeat()
                while True:
                    f = c.recv(0)
                    if f is None:
                        break
                    if f.WhichOneof("frame") == "deliver":
                        self.got[d].append(f.deliver)
                        if confirm:
                            c.confirm(f.deliver)
            time.sleep(0.05)

    def find(self, dept, mid):
        for x in self.got.get(dept, []):
            if x.envelope.message_id == mid:
                return x
        return None

    def notices(self, dept, kind):
        return [x for x in self.got.get(dept, []) if x.envelope.WhichOneof("body") == "notice" and
                x.envelope.notice.kind == kind]

    def env(self, sender, **kw):
        C = self.S["C"]
        e = self.S["E"].Envelope()
        e.message_id = os.urandom(16)
        e.sender = sender
        e.created_ms = int(time.time() * 1000)
        e.priority = kw.get("priority", C.ROUTINE)
        e.sensitivity = C.NORMAL
        if kw.get("case_id"):
            e.case_id = kw["case_id"]
        if kw.get("reply_to"):
            e.in_reply_to = kw["reply_to"]
        return e

    def send(self, e):
        c = self.cl[e.sender]
        cpxclient.sign(e, c.key, c.pub)
        r = c.reply(e)
        self.last = r
        return r

    def ctl_case(self, *args):
        r = self.gw.ctl("case", *args, "--data", os.path.join(self.gw.dir, "data"), check=False)
        return r


def minor(S, m, idn, name="张小明", born=(2012, 3, 4), town="TOWN_HUASHI"):
    C = S["C"]
    if idn:
        m.id_number = idn
    else:
        m.id_unknown_reason = C.REPORTER_DOES_NOT_KNOW
    m.name = name
    m.sex = C.MALE
    if idn:  # the date in the ID number wins (validation checks they agree)
        born = (int(idn[6:10]), int(idn[10:12]), int(idn[12:14]))
    m.birth_date.year, m.birth_date.month, m.birth_date.day = born
    m.town = town
    m.current_address = "华士镇 1 号"


def guardianship_report(w, sender, idn, role=None, name="张小明"):
    S, B, C = w.S, w.S["B"], w.S["C"]
    e = w.env(sender, priority=C.URGENT)
    r = e.discovery_report
    r.reporter.role = role or B.TEACHER
    r.reporter.duty_to_report = r.reporter.role in (B.TEACHER, B.DOCTOR, B.COMMUNITY_WORKER, B.RELATIVE)
    r.reporter.name = "王老师"
    r.reporter.phone = "13900000000"
    r.channel = B.SCHOOL
    minor(S, r.minor, idn, name=name)
    c = r.categories.add()
    c.category = C.GUARDIANSHIP_MISSING
    c.father = B.DETAINED
    c.mother = B.DETAINED
    r.observation.what = "both parents detained; child alone at home, thin, upset"
    r.observation.observed_ms = e.created_ms - 3600000
    r.health.family_economy = B.SUBSISTENCE_ALLOWANCE
    return e


def disposition(w, sender, ref, action, status, **kw):
    e = w.env(sender, reply_to=ref.message_id)
    d = e.disposition
    d.referral_id = ref.message_id
    d.action = action
    d.status = status
    for k, v in kw.items():
        setattr(d, k, v)
    return e


def referral(w, sender, case, to, task, reason="", reply_to=None):
    C = w.S["C"]
    e = w.env(sender, case_id=case, priority=C.URGENT)
    e.referral.to = to
    e.referral.task = task
    e.referral.reason = reason or "needs " + to
    e.referral.due_by_ms = e.created_ms + 30 * 86400000
    e.referral.priority = C.URGENT
    return e


def is_ack(r):
    return r is not None and r.WhichOneof("frame") == "ack"


def nack_rule(r):
    if r is None or r.WhichOneof("frame") != "nack":
        return None
    return (r.nack.code, [(e.path, e.rule) for e in r.nack.errors])


def scenario_a(w):
    S, B, C, F = w.S, w.S["B"], w.S["C"], w.S["F"]
    idn = cpxclient.id_number(born=(2012, 3, 4), seq=11)
    rep = guardianship_report(w, "EDUCATION", idn)
    a = w.send(rep)
    check(is_ack(a) and a.ack.case_id.startswith("JY-"), "A: teacher's report accepted, case opened")
    case = a.ack.case_id
    w.pump(1.0)
    ca, town = w.find("CIVIL_AFFAIRS", rep.message_id), w.find("TOWN_HUASHI", rep.message_id)
    check(ca is not None and town is not None, "A: report routed to CIVIL_AFFAIRS and TOWN_HUASHI")
    check(w.find("EDUCATION", rep.message_id) is None, "A: not sent back to the reporter")
    if ca and town:
        check(list(ca.withheld) == [] and ca.envelope.discovery_report.reporter.name == "王老师",
              "A: CIVIL_AFFAIRS sees everything incl. the reporter")
        check(cpxclient.verify(ca.envelope, w.pubs["EDUCATION"]) == [], "A: CIVIL_AFFAIRS copy verifies, nothing withheld")
        wh = cpxclient.verify(town.envelope, w.pubs["EDUCATION"])
        check(wh == [1, 5, 8] and sorted(town.withheld) == [1, 5, 8] and town.view_profile == "town-office",
              "A: town office copy verifies; reporter, observation, health withheld (%s, %s)" % (wh, town.view_profile))
        check(not town.envelope.discovery_report.HasField("reporter") and
              town.envelope.discovery_report.minor.name == "张小明",
              "A: the town sees the minor (for home visits) but not the reporter")
        check(town.case_id == case, "A: Deliver carries the case id")

    # a second report about the same child (police, with the ID number) links
    rep2 = guardianship_report(w, "POLICE", idn, role=B.POLICE_OFFICER)
    a2 = w.send(rep2)
    check(is_ack(a2) and a2.ack.case_id == case, "A: second report with the same ID links to %s (%s)" % (case, nack_rule(a2)))
    # a report without ID number: name + birth date + town
    rep3 = guardianship_report(w, "TOWN_HUASHI", "", role=B.COMMUNITY_WORKER, name="张 小明")
    a3 = w.send(rep3)
    check(is_ack(a3) and a3.ack.case_id == case, "A: report without ID linked by name+birth+town")
    w.pump(0.8)
    m2c = w.notices("CIVIL_AFFAIRS", B.MATCH_TO_CONFIRM)
    check(len(m2c) == 1 and m2c[0].envelope.sender == "GATEWAY" and
          rep3.message_id in list(m2c[0].envelope.notice.related),
          "A: MATCH_TO_CONFIRM notice to CIVIL_AFFAIRS naming the linked report")
    if m2c:
        check(cpxclient.verify(m2c[0].envelope, w.gw_pub) == [], "A: gateway notice verifies with the gateway key")
    ew = w.notices("CIVIL_AFFAIRS", B.EARLY_WARNING)
    check(len(ew) == 1 and ew[0].envelope.notice.rule == "reports_in_window" and
          w.notices("TOWN_HUASHI", B.EARLY_WARNING), "A: early warning (2 reports in 30 days) to CIVIL_AFFAIRS and the town")

    asm = w.env("CIVIL_AFFAIRS", case_id=case)
    asm.assessment.guardianship = B.ABSENT
    asm.assessment.risk = B.HIGH
    asm.assessment.needs.extend([C.RESCUE_PROTECTION, C.PSYCHOLOGICAL_CARE])
    asm.assessment.basis = "both parents in detention, no relative able to care"
    asm.assessment.assessed_on.year, asm.assessment.assessed_on.month, asm.assessment.assessed_on.day = 2026, 11, 28
    check(is_ack(w.send(asm)), "A: assessment HIGH accepted")
    st = json.loads(w.ctl_case("show", case, "--json").stdout or "{}")
    check(st.get("status") == "ASSESSED" and st.get("risk") == "HIGH", "A: case ASSESSED, risk HIGH (%s)" % st.get("status"))

    r1 = referral(w, "TOWN_HUASHI", case, "CIVIL_AFFAIRS", C.RESCUE_PROTECTION, "scattered-orphan living allowance")
    r2 = referral(w, "TOWN_HUASHI", case, "WOMENS_FED", C.PSYCHOLOGICAL_CARE, "loving-mother pairing")
    check(is_ack(w.send(r1)) and is_ack(w.send(r2)), "A: referrals to CIVIL_AFFAIRS and WOMENS_FED accepted")
    w.pump(0.8)
    check(w.find("WOMENS_FED", r2.message_id) is not None, "A: WOMENS_FED received its referral")

    bad = disposition(w, "HEALTH", r1, B.LIVING_ALLOWANCE, B.DISPOSITION_ACCEPTED)
    check(nack_rule(w.send(bad)) == (F.RULE_VIOLATION, [("disposition.referral_id", "addressed_to_sender")]),
          "A: disposition from a department the referral was not addressed to: RULE_VIOLATION")
    unk = w.env("CIVIL_AFFAIRS", case_id=case)
    unk.disposition.referral_id = os.urandom(16)
    unk.disposition.action = B.LIVING_ALLOWANCE
    unk.disposition.status = B.DISPOSITION_ACCEPTED
    check(nack_rule(w.send(unk)) == (F.UNKNOWN_REFERENCE, [("disposition.referral_id", "unknown_referral")]),
          "A: disposition answering no referral: UNKNOWN_REFERENCE")
    d1 = disposition(w, "CIVIL_AFFAIRS", r1, B.LIVING_ALLOWANCE, B.DISPOSITION_DONE, amount_fen=120000,
                     family_economy=B.SUBSISTENCE_ALLOWANCE)
    check(is_ack(w.send(d1)), "A: CIVIL_AFFAIRS grants the living allowance (DONE)")
    d2 = disposition(w, "WOMENS_FED", r2, B.LOVING_MOTHER_PAIRING, B.DISPOSITION_ACCEPTED)
    check(is_ack(w.send(d2)), "A: WOMENS_FED accepts")
    close1 = w.env("CIVIL_AFFAIRS", case_id=case)
    close1.follow_up.visit_date.year, close1.follow_up.visit_date.month, close1.follow_up.visit_date.day = 2026, 11, 28
    close1.follow_up.visitor = "民政 李"
    close1.follow_up.outcome = B.STABLE
    close1.follow_up.recommend_close = True
    check(nack_rule(w.send(close1)) == (F.RULE_VIOLATION, [("follow_up.recommend_close", "close_with_open_referral")]),
          "A: close refused while the WOMENS_FED referral is open")
    d3 = disposition(w, "WOMENS_FED", r2, B.LOVING_MOTHER_PAIRING, B.DISPOSITION_DONE)
    check(is_ack(w.send(d3)), "A: WOMENS_FED done")
    d4 = disposition(w, "WOMENS_FED", r2, B.LOVING_MOTHER_PAIRING, B.DISPOSITION_IN_PROGRESS)
    check(nack_rule(w.send(d4)) == (F.RULE_VIOLATION, [("disposition.status", "referral_closed")]),
          "A: a step on a closed referral is refused")
    close1.message_id = os.urandom(16)
    check(nack_rule(w.send(close1)) == (F.RULE_VIOLATION, [("follow_up.recommend_close", "close_without_follow_up")]),
          "A: close refused before a follow-up visit is recorded")

    rel = w.env("JUSTICE")
    rel.release_notice.parent_role = B.FATHER
    rel.release_notice.parent_id_number = cpxclient.id_number(born=(1985, 5, 6), seq=40)
    rel.release_notice.parent_name = "张父"
    rel.release_notice.kind = B.SENTENCE_ENDED
    rel.release_notice.release_date.year, rel.release_notice.release_date.month, rel.release_notice.release_date.day = 2026, 11, 27
    rel.release_notice.minor_id_number = idn
    a = w.send(rel)
    check(is_ack(a) and a.ack.case_id == case, "A: father's ReleaseNotice linked to the case by the minor's ID")
    w.pump(0.8)
    ar = w.notices("CIVIL_AFFAIRS", B.ALLOWANCE_REVIEW)
    check(len(ar) == 1 and rel.message_id in list(ar[0].envelope.notice.related) and
          d1.message_id in list(ar[0].envelope.notice.related),
          "A: ALLOWANCE_REVIEW to CIVIL_AFFAIRS naming the release and the allowance")

    fu = w.env("TOWN_HUASHI", case_id=case)
    fu.follow_up.visit_date.year, fu.follow_up.visit_date.month, fu.follow_up.visit_date.day = 2026, 11, 28
    fu.follow_up.visitor = "社区 赵"
    fu.follow_up.outcome = B.IMPROVED
    check(is_ack(w.send(fu)), "A: follow-up visit recorded")
    nclose = w.env("TOWN_HUASHI", case_id=case)
    nclose.follow_up.CopyFrom(fu.follow_up)
    nclose.follow_up.recommend_close = True
    check(nack_rule(w.send(nclose)) == (F.RULE_VIOLATION, [("follow_up.recommend_close", "close_by")]),
          "A: the town may not close the case (not the lead)")
    close1.message_id = os.urandom(16)
    check(is_ack(w.send(close1)), "A: CIVIL_AFFAIRS closes after the follow-up")
    st = json.loads(w.ctl_case("show", case, "--json").stdout or "{}")
    check(st.get("status") == "CLOSED" and st.get("open_referrals") == 0 and st.get("reports") == 3,
          "A: case CLOSED, 3 reports, no open referral")
    refs = {r["to"]: r["state"] for r in st.get("referrals_detail", [])}
    check(refs == {"CIVIL_AFFAIRS": "DONE", "WOMENS_FED": "DONE"}, "A: referrals DONE (%s)" % refs)
    tl = st.get("timeline", [])
    acc = [x for x in tl if x["event"] == "ACCEPTED"]
    bodies = [x["body"] for x in acc]
    check(bodies[:3] == ["discovery_report"] * 3 and "assessment" in bodies and "release_notice" in bodies and
          bodies[-1] == "follow_up", "A: audit timeline from reports to follow-up (%s)" % bodies)
    check(all(isinstance(x["seq"], int) for x in tl) and [x["seq"] for x in tl] == sorted(x["seq"] for x in tl),
          "A: timeline in audit sequence order")
    check(any(x["event"] == "NOTICE_RAISED" for x in tl), "A: notices are in the case's audit timeline")
    check(any("views=TOWN_HUASHI:town-office" in x["detail"] for x in acc),
          "A: ACCEPTED leaf records the view profile applied")
    txt = w.ctl_case("show", case).stdout
    check("CLOSED" in txt and "discovery_report" in txt, "A: case show (table)")
    check("张小明" not in txt, "A: no name without the records key")
    rk = os.path.join(w.gw.dir, "keys", "CASES.records.key")
    st = json.loads(w.ctl_case("show", case, "--json", "--records-key", rk).stdout or "{}")
    check(st.get("minor_name") == "张小明", "A: the lead office reads the minor's name with the records key")
    st = json.loads(w.ctl_case("show", case, "--json", "--records-key", rk, "--as", "WOMENS_FED").stdout or "{}")
    check("minor_name" not in st, "A: a department that took part sees the case, not the name")
    r = w.ctl_case("show", case, "--as", "HEALTH")
    check(r.returncode != 0 and "no case" in r.stderr, "A: HEALTH took no part: sees no such case")
    r = w.ctl_case("show", case, "--as", "WOMENS_FED")
    check(r.returncode == 0, "A: WOMENS_FED took part: may see it")
    return case


def scenario_b(w, routes_delay):
    B, C = w.S["B"], w.S["C"]
    e = w.env("CIVIL_AFFAIRS", priority=C.IMMEDIATE)
    r = e.discovery_report
    r.reporter.role = B.NEIGHBOUR
    r.reporter.name = "邻居 陈"
    r.reporter.phone = "13800000000"
    r.channel = B.HOTLINE
    minor(w.S, r.minor, cpxclient.id_number(born=(2014, 6, 1), seq=77), name="李小红", town="TOWN_HUASHI")
    c = r.categories.add()
    c.category = C.HARMED
    c.harm_types.append(B.ABUSE)
    r.immediate_danger = True
    r.circumstances.append(B.RETURNING_DROPOUT)
    r.observation.what = "screaming and beating heard at 23:40"
    r.observation.observed_ms = e.created_ms - 600000
    a = w.send(e)
    check(is_ack(a), "B: neighbour's night-time abuse report accepted (%s)" % (nack_rule(a),))
    case = a.ack.case_id
    w.pump(1.0)
    town, edu = w.find("TOWN_HUASHI", e.message_id), w.find("EDUCATION", e.message_id)
    check(town is not None and not town.envelope.discovery_report.HasField("reporter") and 1 in town.withheld,
          "B: the town office never sees the reporter's name")
    check(edu is not None and not edu.envelope.discovery_report.HasField("reporter") and
          edu.view_profile == "education" and cpxclient.verify(edu.envelope, w.pubs["CIVIL_AFFAIRS"]) == [1, 5],
          "B: EDUCATION (returning dropout) sees neither reporter nor narrative; copy verifies")
    # POLICE is offline and never acknowledges: escalation after the 2 s deadline
    time.sleep(routes_delay + 1.5)
    w.pump(1.0)
    esc = [x for x in w.got["CIVIL_AFFAIRS"] if x.envelope.WhichOneof("body") == "escalation" and
           x.envelope.escalation.item_id == e.message_id]
    check(len(esc) >= 1 and esc[0].envelope.escalation.department == "POLICE" and
          esc[0].envelope.escalation.kind == B.ACKNOWLEDGE and esc[0].envelope.escalation.level == 1,
          "B: POLICE late -> Escalation (ACKNOWLEDGE, level 1) to CIVIL_AFFAIRS")
    sup = [x for x in w.got["PROCURATORATE"] if x.envelope.WhichOneof("body") == "escalation"]
    check(len(sup) >= 1, "B: ... and to POLICE's supervisor (PROCURATORATE)")
    if esc:
        check(cpxclient.verify(esc[0].envelope, w.gw_pub) == [], "B: Escalation signed by the gateway")
    lst = json.loads(w.ctl_case("list", "--overdue", "--json").stdout or "[]")
    check([x["case"] for x in lst] == [case], "B: case list --overdue shows the case")
    st = json.loads(w.ctl_case("stats", "--json").stdout or "{}")
    check(st.get("overdue_by_department", {}).get("POLICE") == 1, "B: case stats: one item overdue at POLICE")
    time.sleep(3.2)
    w.pump(0.8)
    # one level per escalation message (a late confirmation may bring the same one twice),
    # POLICE's deadline only
    lv = sorted({x.envelope.message_id: x.envelope.escalation.level for x in w.got["CIVIL_AFFAIRS"]
                 if x.envelope.WhichOneof("body") == "escalation" and x.envelope.escalation.item_id == e.message_id
                 and x.envelope.escalation.department == "POLICE"}.values())
    check(lv[:2] == [1, 2], "B: repeated at the configured interval, level 2 (%s)" % lv)
    # police comes online and acknowledges: no further escalation
    w.connect("POLICE")
    w.pump(1.5)
    check(w.find("POLICE", e.message_id) is not None, "B: POLICE receives the report once online")
    w.pump(0.5)  # its acknowledgement is in; escalations raised before it may still arrive
    n_before = len([x for x in w.got["CIVIL_AFFAIRS"] if x.envelope.WhichOneof("body") == "escalation" and
                    x.envelope.escalation.item_id == e.message_id])
    time.sleep(3.5)
    w.pump(0.5)
    lv2 = [x for x in w.got["CIVIL_AFFAIRS"] if x.envelope.WhichOneof("body") == "escalation" and
           x.envelope.escalation.item_id == e.message_id]
    check(len(lv2) == n_before, "B: acknowledged -> escalation stops")
    st = json.loads(w.ctl_case("show", case, "--json").stdout or "{}")
    check(st.get("escalations", 0) >= 2, "B: case counts its escalations")
    tl = st.get("timeline", [])
    check(sum(1 for x in tl if x["event"] == "ESCALATED") >= 2 and
          any("deadline=ACKNOWLEDGE dept=POLICE" in x["detail"] for x in tl),
          "B: ESCALATED leaves in the case's audit timeline")
    return case


def scenario_c(w):
    B, C, F = w.S["B"], w.S["C"], w.S["F"]
    idn = cpxclient.id_number(born=(2010, 1, 2), seq=88)
    rep = guardianship_report(w, "EDUCATION", idn, name="王小华")
    rep.discovery_report.health.illnesses.append(B.LEUKAEMIA)
    rep.discovery_report.health.family_economy = B.LOW_INCOME
    a = w.send(rep)
    check(is_ack(a), "C: report accepted (%s)" % (nack_rule(a),))
    case = a.ack.case_id if is_ack(a) else ""
    r1 = referral(w, "TOWN_HUASHI", case, "CIVIL_AFFAIRS", C.RESCUE_PROTECTION)
    r2 = referral(w, "TOWN_HUASHI", case, "DISABLED_FED", C.PSYCHOLOGICAL_CARE)
    r3 = referral(w, "TOWN_HUASHI", case, "HEALTH", C.MEDICAL_PROTECTION)
    check(all(is_ack(w.send(x)) for x in (r1, r2, r3)), "C: three referrals")
    check(is_ack(w.send(disposition(w, "CIVIL_AFFAIRS", r1, B.LIVING_ALLOWANCE, B.DISPOSITION_DONE,
                                    amount_fen=100000))), "C: first living allowance granted")
    d2 = disposition(w, "DISABLED_FED", r2, B.LIVING_ALLOWANCE, B.DISPOSITION_DONE, amount_fen=80000)
    check(is_ack(w.send(d2)), "C: second living allowance accepted (flagged, not refused)")
    w.pump(0.8)
    db = w.notices("CIVIL_AFFAIRS", B.DOUBLE_BENEFIT)
    check(len(db) == 1 and d2.message_id in list(db[0].envelope.notice.related) and
          len(db[0].envelope.notice.related) == 2, "C: DOUBLE_BENEFIT to CIVIL_AFFAIRS with both records")
    bad = disposition(w, "HEALTH", r3, B.ONE_OFF_MEDICAL_AID, B.DISPOSITION_DONE, amount_fen=1000000,
                      illness=B.OTHER_SERIOUS_ILLNESS, family_economy=B.LOW_INCOME)
    # the validator knows the listed illnesses too (INVALID); the gateway's rule is the backstop
    check(nack_rule(w.send(bad)) in ((F.RULE_VIOLATION, [("disposition.illness", "medical_aid_illness")]),
                                     (F.INVALID, [("disposition.illness", "medical_aid_illness")])),
          "C: one-off medical aid for an unlisted illness refused, rule named (%s)" % (nack_rule(w.last),))
    ok = disposition(w, "HEALTH", r3, B.ONE_OFF_MEDICAL_AID, B.DISPOSITION_DONE, amount_fen=1000000,
                     illness=B.LEUKAEMIA, family_economy=B.LOW_INCOME)
    check(is_ack(w.send(ok)), "C: one-off medical aid granted for leukaemia")
    r4 = referral(w, "TOWN_HUASHI", case, "HEALTH", C.MEDICAL_PROTECTION)
    check(is_ack(w.send(r4)), "C: another medical referral")
    again = disposition(w, "HEALTH", r4, B.ONE_OFF_MEDICAL_AID, B.DISPOSITION_DONE, amount_fen=1000000,
                        illness=B.LEUKAEMIA, family_economy=B.LOW_INCOME)
    check(nack_rule(w.send(again)) == (F.RULE_VIOLATION, [("disposition.action", "medical_aid_once")]),
          "C: a second one-off medical aid for the same minor refused (%s)" % (nack_rule(w.last),))
    return case


def scenario_e(w):
    """A referral withdrawn by the department that made it (REVOKED)."""
    B, C, F = w.S["B"], w.S["C"], w.S["F"]
    idn = cpxclient.id_number(born=(2013, 7, 8), seq=66)
    rep = guardianship_report(w, "EDUCATION", idn, name="陈小军")
    a = w.send(rep)
    check(is_ack(a), "E: report accepted (%s)" % (nack_rule(a),))
    case = a.ack.case_id if is_ack(a) else ""
    ref = referral(w, "TOWN_HUASHI", case, "WOMENS_FED", C.PSYCHOLOGICAL_CARE, "loving-mother pairing")
    ref.referral.due_by_ms = ref.created_ms + 1000  # overdue within the test
    check(is_ack(w.send(ref)), "E: referral to WOMENS_FED accepted")
    time.sleep(1.6)
    w.pump(0.8)

    def act_escalations():
        return {x.envelope.message_id for x in w.got["CIVIL_AFFAIRS"]
                if x.envelope.WhichOneof("body") == "escalation" and
                x.envelope.escalation.item_id == ref.message_id and x.envelope.escalation.kind == B.ACT}
    check(len(act_escalations()) >= 1, "E: the referral is overdue -> Escalation (ACT) to CIVIL_AFFAIRS")

    def revocation(sender, rid=None, reason="the child was placed with his grandmother"):
        e = w.env(sender, case_id=case)
        e.referral_revocation.referral_id = rid or ref.message_id
        if reason:
            e.referral_revocation.reason = reason
        return e
    check(nack_rule(w.send(revocation("HEALTH"))) == (F.RULE_VIOLATION, [("sender", "revoke_by")]),
          "E: a department that did not make the referral may not revoke it (%s)" % (nack_rule(w.last),))
    check(nack_rule(w.send(revocation("TOWN_HUASHI", reason=""))) ==
          (F.INVALID, [("referral_revocation.reason", "required")]),
          "E: a revocation without a reason is refused (%s)" % (nack_rule(w.last),))
    check(nack_rule(w.send(revocation("TOWN_HUASHI", rid=os.urandom(16)))) ==
          (F.UNKNOWN_REFERENCE, [("referral_revocation.referral_id", "unknown_referral")]),
          "E: revoking an unknown referral: UNKNOWN_REFERENCE (%s)" % (nack_rule(w.last),))
    rv = revocation("TOWN_HUASHI")
    a = w.send(rv)
    check(is_ack(a) and a.ack.case_id == case, "E: the referring town office revokes its referral (%s)" % (nack_rule(a),))
    w.pump(0.8)
    got = w.find("WOMENS_FED", rv.message_id)
    check(got is not None and got.envelope.referral_revocation.referral_id == ref.message_id and
          got.envelope.referral_revocation.reason and cpxclient.verify(got.envelope, w.pubs["TOWN_HUASHI"]) == [],
          "E: the revocation reaches WOMENS_FED, the referral's recipient, and verifies")
    check(w.find("CIVIL_AFFAIRS", rv.message_id) is not None, "E: ... and the lead agency")
    st = json.loads(w.ctl_case("show", case, "--json").stdout or "{}")
    refs = {r["to"]: r["state"] for r in st.get("referrals_detail", [])}
    check(refs.get("WOMENS_FED") == "REVOKED" and st.get("open_referrals") == 0,
          "E: referral REVOKED, none open (%s, %s)" % (refs, st.get("open_referrals")))
    late = disposition(w, "WOMENS_FED", ref, B.LOVING_MOTHER_PAIRING, B.DISPOSITION_ACCEPTED)
    check(nack_rule(w.send(late)) == (F.RULE_VIOLATION, [("disposition.status", "referral_revoked")]),
          "E: a disposition answering the revoked referral is refused naming the rule (%s)" % (nack_rule(w.last),))
    check(nack_rule(w.send(revocation("CIVIL_AFFAIRS"))) ==
          (F.RULE_VIOLATION, [("referral_revocation.referral_id", "referral_closed")]),
          "E: revoking it twice is refused (%s)" % (nack_rule(w.last),))
    # escalation for the referral stops: none after the repeat interval (3 s)
    before = act_escalations()
    time.sleep(3.5)
    w.pump(0.5)
    check(act_escalations() == before, "E: revoked -> its escalation stops")
    check(not any(d["item"] == ref.message_id.hex() for d in
                  json.loads(w.ctl_case("show", case, "--json").stdout or "{}").get("deadlines", [])),
          "E: no deadline left for the revoked referral")
    # the case closes: its only referral was revoked
    fu = w.env("TOWN_HUASHI", case_id=case)
    fu.follow_up.visit_date.year, fu.follow_up.visit_date.month, fu.follow_up.visit_date.day = 2026, 11, 28
    fu.follow_up.visitor = "社区 赵"
    fu.follow_up.outcome = B.STABLE
    check(is_ack(w.send(fu)), "E: follow-up visit recorded")
    close = w.env("CIVIL_AFFAIRS", case_id=case)
    close.follow_up.CopyFrom(fu.follow_up)
    close.follow_up.recommend_close = True
    check(is_ack(w.send(close)), "E: the case closes once its only open referral was revoked (%s)" % (nack_rule(w.last),))
    tl = json.loads(w.ctl_case("show", case, "--json").stdout or "{}").get("timeline", [])
    check(any(x["event"] == "ACCEPTED" and x["body"] == "referral_revocation" for x in tl),
          "E: the revocation is in the case's audit timeline")
    return case


def scenario_d(w, gw):
    """Deadlines survive a restart; aged 16+ with a training need -> referral to HRSS."""
    B, C = w.S["B"], w.S["C"]
    e = w.env("TOWN_HUASHI", priority=C.IMMEDIATE)
    r = e.discovery_report
    r.reporter.role = B.COMMUNITY_WORKER
    r.reporter.duty_to_report = True
    r.reporter.name = "社区 周"
    r.channel = B.HOME_VISIT
    minor(w.S, r.minor, cpxclient.id_number(born=(2010, 1, 1), seq=99), name="赵大壮")
    c = r.categories.add()
    c.category = C.HARMED
    c.harm_types.append(B.ABANDONMENT)
    r.circumstances.append(B.NEEDS_SKILLS_TRAINING)
    r.observation.what = "left alone for weeks"
    r.observation.observed_ms = e.created_ms - 60000
    a = w.send(e)
    check(is_ack(a), "D: report about a minor aged 16+ accepted (%s)" % (nack_rule(a),))
    case = a.ack.case_id if is_ack(a) else ""
    st = json.loads(w.ctl_case("show", case, "--json").stdout or "{}")
    refs = [(x["to"], x["task"], x["state"]) for x in st.get("referrals_detail", [])]
    check(("HRSS", "EMPLOYMENT_SUPPORT", "SENT") in refs, "D: aged 16+ with a training need -> referral to HRSS (%s)" % refs)
    # the gateway stops before the police deadline (2 s) and comes back after it
    for c in w.cl.values():
        c.close()
    w.cl.clear()
    check(gw.stop() == 0, "D: gateway stopped before the deadline")
    time.sleep(2.5)
    gw.start()
    w.connect("CIVIL_AFFAIRS")
    w.got["CIVIL_AFFAIRS"] = []
    w.pump(2.0)
    esc = [x for x in w.got["CIVIL_AFFAIRS"] if x.envelope.WhichOneof("body") == "escalation" and
           x.envelope.escalation.item_id == e.message_id and x.envelope.escalation.department == "POLICE"]
    check(len(esc) >= 1, "D: the deadline survived the restart: escalation after it")


def main(build):
    src = cpxclient.SRC
    gw = cpxclient.Gateway(build, depts=DEPTS)
    with cpxclient.GatewayTest(gw, failures):
        # shortened deadlines: police acknowledge in 2 s instead of 5 min
        with open(os.path.join(src, "deploy", "jiangyin", "routes.yaml")) as f:
            routes = f.read().replace("ack_within: 5m", "ack_within: 2s")
        with open(os.path.join(gw.dir, "routes.yaml"), "w") as f:
            f.write(routes)
        with open(os.path.join(gw.dir, "casepolicy.yaml"), "w") as f:
            f.write("version: 1\nkeys:\n  index: keys/CASES.index.key\n  records: keys/CASES.records.key\n"
                    "views: %s\nescalation:\n  repeat: 3s\n  check_every: 200ms\n"
                    % os.path.join(src, "deploy", "jiangyin", "views.yaml"))
        with open(gw.config, "a") as f:
            f.write("routes: routes.yaml\ncases: casepolicy.yaml\n")
        # POLICE answers to the procuratorate (legal supervision) in this test
        gw.ctl("enroll", "--data", os.path.join(gw.dir, "data"), "--gateway-key",
               os.path.join(gw.keys, "GATEWAY.sign.key"), "POLICE", "--curve-pub",
               os.path.join(gw.keys, "POLICE.curve.pub"), "--sign-pub",
               os.path.join(gw.keys, "POLICE.sign.pub"), "--supervisor", "PROCURATORATE")
        gw.start()
        w = World(gw)
        w.connect(*[d for d in DEPTS if d != "POLICE"])
        w.cl["POLICE"] = gw.client("POLICE")  # sends, but does not take deliveries until B
        w.got["POLICE"] = []
        case_a = scenario_a(w)
        w.cl.pop("POLICE").close()
        case_b = scenario_b(w, 2.0)
        case_c = scenario_c(w)
        st = json.loads(w.ctl_case("stats", "--json").stdout or "{}")
        check(st.get("cases") == 3 and st["by_status"]["CLOSED"] == 1 and st["by_category"]["HARMED"] == 1,
              "stats: 3 cases, 1 closed, 1 HARMED (%s)" % st)
        check(st.get("median_ms_report_to_first_accepted_referral") is not None, "stats: median report -> accepted referral")
        lst = json.loads(w.ctl_case("list", "--status", "CLOSED", "--json").stdout or "[]")
        check([x["case"] for x in lst] == [case_a], "list --status CLOSED")
        lst = json.loads(w.ctl_case("list", "--category", "HARMED", "--town", "TOWN_HUASHI", "--json").stdout or "[]")
        check([x["case"] for x in lst] == [case_b], "list --category HARMED --town TOWN_HUASHI")
        lst = json.loads(w.ctl_case("list", "--as", "WOMENS_FED", "--json").stdout or "[]")
        check([x["case"] for x in lst] == [case_a], "list --as WOMENS_FED: only the case it took part in")
        lst = json.loads(w.ctl_case("list", "--as", "DISABLED_FED", "--json").stdout or "[]")
        check(sorted(x["case"] for x in lst) == [case_c], "list --as DISABLED_FED")
        txt = w.ctl_case("stats").stdout
        check("by_status" in txt and "median" in txt, "stats (table)")
        scenario_e(w)
        scenario_d(w, gw)
        for c in w.cl.values():
            c.close()
        cpxclient.stop_and_verify(gw, check)  # gateway-signed notices and escalations included
        kf = os.path.join(gw.dir, "keys", "CASES.index.key")
        check(os.path.exists(kf) and (os.stat(kf).st_mode & 0o077) == 0, "index key created apart, mode 0600")
    return cpxclient.verdict(failures)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CPX_BINARY_DIR", "build")))
