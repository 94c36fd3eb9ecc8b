/* synth.c — deterministic synthetic cpx.v1 messages for Jiangyin.
 *
 * Every allocation goes through xalloc, which jumps back to the generator's entry
 * on failure; sub-messages are initialised as soon as they are attached, so the
 * partial tree is always one cpx_msg_free can release. */
#include "cpx/synth.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpx/err.h"
#include "cpx/idnum.h"
#include "cpx/validate.h"

struct cpx_synth {
    uint64_t state;
    jmp_buf oom;
};

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define DAY_MS 86400000LL

/* ---- data --------------------------------------------------------------------------- */

static const struct town {
    const char *code, *name;
} towns[] = {
    {"TOWN_CHENGJIANG", "澄江街道"}, {"TOWN_NANZHA", "南闸街道"},   {"TOWN_YUNTING", "云亭街道"},
    {"TOWN_XIAGANG", "夏港街道"},    {"TOWN_SHENGANG", "申港街道"}, {"TOWN_LIGANG", "利港街道"},
    {"TOWN_HUANGTU", "璜土镇"},      {"TOWN_YUECHENG", "月城镇"},   {"TOWN_QINGYANG", "青阳镇"},
    {"TOWN_XUXIAKE", "徐霞客镇"},    {"TOWN_HUASHI", "华士镇"},     {"TOWN_ZHOUZHUANG", "周庄镇"},
    {"TOWN_XINQIAO", "新桥镇"},      {"TOWN_CHANGJING", "长泾镇"},  {"TOWN_GUSHAN", "顾山镇"},
    {"TOWN_ZHUTANG", "祝塘镇"},
};

static const char *const village_stems[] = {
    "红星", "新华", "永安", "东方", "南园", "北郭", "河塘", "三房巷", "长山", "花园",
    "华西", "斗山", "定山", "朝阳", "建设", "友谊", "和平", "文林", "澄南", "黄山",
    "璜村", "西石桥", "马镇", "陆桥", "云顾", "泗河", "向阳", "前进", "龙运", "沿江",
};

static const char *const roads[] = {
    "人民中路", "虹桥南路", "长江路", "澄江中路", "延陵路", "青果路", "环城北路",
    "寿山路", "朝阳路", "芙蓉大道", "滨江西路", "澄山路", "暨阳路", "五星路",
};

static const char *const surnames[] = {
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱",
    "胡", "郭", "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯",
    "邓", "曹", "彭", "曾", "肖", "田", "董", "袁", "潘", "蒋", "蔡", "叶", "程", "苏",
    "沈", "陆", "顾", "钱", "缪", "夏", "薛", "承",
};

static const char *const given[] = {
    "子涵", "浩然", "欣怡", "梓轩", "雨桐", "宇航", "诗琪", "俊杰", "佳怡", "一诺",
    "明轩", "若汐", "思远", "可馨", "嘉豪", "雅琪", "天佑", "心怡", "志强", "晓燕",
    "文博", "紫萱", "睿", "婷", "磊", "洋", "静", "浩", "娜", "鑫", "梦瑶", "锦程",
};

/* Region codes of migrant children's household registration. */
static const uint32_t migrant_regions[] = {
    341221, 412726, 511623, 522427, 430524, 362430, 320923, 371323, 420982, 500235,
};
static const char *const migrant_places[] = {
    "安徽省临泉县", "河南省太康县", "四川省仪陇县", "贵州省织金县", "湖南省邵阳县",
    "江西省于都县", "江苏省阜宁县", "山东省郓城县", "湖北省汉川市", "重庆市云阳县",
};

static const char *const schools[] = {
    "实验小学", "中心小学", "初级中学", "中心幼儿园", "职业技术学校",
};

static const char *const incapacitating_text[] = {
    [CPX__V1__PARENT_SITUATION__DETAINED] = "因涉嫌犯罪被羁押",
    [CPX__V1__PARENT_SITUATION__COMPULSORY_REHAB] = "正在强制隔离戒毒",
    [CPX__V1__PARENT_SITUATION__SERIOUSLY_ILL] = "身患重病长期住院",
    [CPX__V1__PARENT_SITUATION__SEVERELY_DISABLED] = "重度残疾无法履行监护职责",
    [CPX__V1__PARENT_SITUATION__MISSING] = "外出多年下落不明",
    [CPX__V1__PARENT_SITUATION__DEAD] = "已经去世",
    [CPX__V1__PARENT_SITUATION__PARENT_UNKNOWN] = "身份不明",
};

static const char *const harm_text[] = {
    [CPX__V1__HARM_TYPE__DOMESTIC_VIOLENCE] = "孩子身上多处淤青，邻居反映经常听到家中打骂声",
    [CPX__V1__HARM_TYPE__ABUSE] = "孩子长期被关在屋内，衣着单薄，明显营养不良",
    [CPX__V1__HARM_TYPE__ABANDONMENT] = "孩子被独自留在家中多日，监护人不知去向",
    [CPX__V1__HARM_TYPE__SEXUAL_ABUSE] = "孩子向老师透露曾遭受成年人的不当接触",
    [CPX__V1__HARM_TYPE__INTENTIONAL_INJURY] = "孩子头部有外伤，称是被人故意打伤",
    [CPX__V1__HARM_TYPE__TRAFFICKING] = "发现孩子由非亲属成年人带领，疑似被拐卖",
    [CPX__V1__HARM_TYPE__EXPLOITED_FOR_BEGGING] = "孩子被成年人安排在路口乞讨，成年人在旁看管",
};

static const char *const street_text[] = {
    [CPX__V1__STREET_SITUATION__BEGGING_OR_ROAMING] = "孩子在车站附近流浪乞讨，夜间露宿",
    [CPX__V1__STREET_SITUATION__PAST_BEGGING_OR_ROAMING] = "孩子曾多次离家在外流浪",
    [CPX__V1__STREET_SITUATION__TRAFFICKED_OR_ABDUCTED] = "孩子自述曾被陌生人带离家乡",
    [CPX__V1__STREET_SITUATION__COERCED_INTO_BEGGING_OR_CRIME] = "孩子被人胁迫在商场行窃",
    [CPX__V1__STREET_SITUATION__ORPHAN] = "孩子父母均已去世，目前无人照料",
    [CPX__V1__STREET_SITUATION__PARENTS_NOT_FOUND] = "多方查找仍无法联系到孩子的父母",
};

static const char *const hardship_text[] = {
    [CPX__V1__HARDSHIP__FAMILY_POVERTY] = "家庭收入微薄，孩子的基本生活和学习难以保障",
    [CPX__V1__HARDSHIP__SERIOUS_ILLNESS] = "孩子身患重病，医疗费用给家庭带来沉重负担",
    [CPX__V1__HARDSHIP__SEVERE_DISABILITY] = "孩子重度残疾，需要长期康复和照料",
};

static const char *const illness_text[] = {
    [CPX__V1__ILLNESS__AIDS] = "艾滋病",
    [CPX__V1__ILLNESS__LEUKAEMIA] = "白血病",
    [CPX__V1__ILLNESS__APLASTIC_ANAEMIA] = "再生障碍性贫血",
    [CPX__V1__ILLNESS__HAEMOPHILIA] = "血友病",
    [CPX__V1__ILLNESS__CONGENITAL_HEART_DISEASE] = "先天性心脏病",
    [CPX__V1__ILLNESS__URAEMIA] = "尿毒症",
    [CPX__V1__ILLNESS__MALIGNANT_TUMOUR] = "恶性肿瘤",
    [CPX__V1__ILLNESS__RARE_DISEASE] = "罕见病",
    [CPX__V1__ILLNESS__OTHER_SERIOUS_ILLNESS] = "其他重大疾病",
};

static const char *const other_reasons[] = {
    "父母长期在外务工，孩子由年迈的祖辈照顾，情绪低落、厌学",
    "家庭突遭火灾，住房损毁，暂无安身之所",
    "孩子多次离家出走，家长无力管教，申请社会力量介入",
    "孩子目睹家庭重大变故，出现明显心理创伤",
};

/* ---- PRNG and allocation ------------------------------------------------------------- */

uint64_t cpx_synth_u64(cpx_synth_t *s)
{
    uint64_t z = (s->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static unsigned rnd(cpx_synth_t *s, unsigned n)
{
    return n ? (unsigned)(cpx_synth_u64(s) % n) : 0;
}

static bool chance(cpx_synth_t *s, unsigned percent)
{
    return rnd(s, 100) < percent;
}

#define PICK(s, arr) ((arr)[rnd((s), N(arr))])

static void *xalloc(cpx_synth_t *s, size_t n)
{
    void *p = calloc(1, n ? n : 1);
    if (!p)
        longjmp(s->oom, 1);
    return p;
}

static void *new_msg(cpx_synth_t *s, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = xalloc(s, d->sizeof_message);
    d->message_init(m);
    return m;
}

static char *xprintf(cpx_synth_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *xprintf(cpx_synth_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = xalloc(s, (size_t)(n > 0 ? n : 0) + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

static void random_bytes(cpx_synth_t *s, ProtobufCBinaryData *b, size_t n)
{
    b->data = xalloc(s, n);
    for (size_t i = 0; i < n; i++)
        b->data[i] = (uint8_t)cpx_synth_u64(s);
    b->len = n;
}

/* A growing text buffer for narratives, in one allocation of fixed size. */
typedef struct text {
    char *p;
    size_t len, cap;
} text_t;

static void text_init(cpx_synth_t *s, text_t *t, size_t cap)
{
    t->p = xalloc(s, cap);
    t->len = 0;
    t->cap = cap;
}

static void text_add(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(text_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    /* never cut a UTF-8 sequence: drop the whole addition if it does not fit */
    if (n < 0 || (size_t)n >= t->cap - t->len)
        t->p[t->len] = '\0';
    else
        t->len += (size_t)n;
}

/* ---- people, places, envelopes ----------------------------------------------------------- */

static char *person_name(cpx_synth_t *s)
{
    return xprintf(s, "%s%s", PICK(s, surnames), PICK(s, given));
}

static char *phone(cpx_synth_t *s)
{
    static const char *const pfx[] = {"138", "139", "151", "152", "158", "187", "189", "133"};
    return xprintf(s, "%s%08u", PICK(s, pfx), rnd(s, 100000000));
}

static const char *village_suffix(cpx_synth_t *s, bool street)
{
    return street || chance(s, 30) ? "社区" : "村";
}

static void fill_envelope(cpx_synth_t *s, cpx_envelope_t *e, int64_t created_ms, const char *sender,
                          int priority)
{
    random_bytes(s, &e->message_id, 16);
    e->sender = xprintf(s, "%s", sender);
    e->created_ms = created_ms;
    e->priority = priority;
    e->sensitivity = CPX__V1__SENSITIVITY__NORMAL;
}

static void add_recipient(cpx_synth_t *s, cpx_envelope_t *e, const char *r)
{
    if (!strcmp(e->sender, r))
        return;
    char **arr = xalloc(s, sizeof(char *) * (e->n_recipients + 1));
    if (e->n_recipients)
        memcpy(arr, e->recipients, sizeof(char *) * e->n_recipients);
    arr[e->n_recipients] = NULL;
    char **old = e->recipients;
    e->recipients = arr;
    free(old);
    e->recipients[e->n_recipients] = xprintf(s, "%s", r);
    e->n_recipients++;
}

static Cpx__V1__Date *new_date(cpx_synth_t *s, int64_t days)
{
    Cpx__V1__Date *d = new_msg(s, &cpx__v1__date__descriptor);
    int y, m, dd;
    cpx_civil_from_days(days, &y, &m, &dd);
    d->year = (uint32_t)y;
    d->month = (uint32_t)m;
    d->day = (uint32_t)dd;
    return d;
}

/* A birth day giving an age in [min_age, max_age] on day `on`, never `on` itself. */
static int64_t birth_day(cpx_synth_t *s, int64_t on, int min_age, int max_age)
{
    int y, m, d;
    cpx_civil_from_days(on, &y, &m, &d);
    int dd = d;
    if (m == 2 && d == 29)
        dd = 28;
    int64_t earliest = cpx_days_from_civil(y - max_age - 1, m, dd) + 1;
    int64_t latest = min_age ? cpx_days_from_civil(y - min_age, m, dd) : on - 1;
    if (latest > on - 1)
        latest = on - 1;
    if (latest < earliest)
        latest = earliest;
    return earliest + (int64_t)rnd(s, (unsigned)(latest - earliest + 1));
}

typedef struct minor_facts {
    int age;
    bool male;
    bool local;
    bool id_known;
    const struct town *town;
    char *name;  /* borrowed from the message */
} minor_facts_t;

/* Fills a MinorIdentity of a child born on day `born`. */
static void fill_minor(cpx_synth_t *s, Cpx__V1__MinorIdentity *mi, int64_t born, int64_t today,
                       bool id_known, int unknown_reason, minor_facts_t *f)
{
    f->male = chance(s, 52);
    f->local = chance(s, 80);
    f->id_known = id_known;
    f->town = &towns[rnd(s, N(towns))];
    f->age = cpx_age_years(born, today);
    unsigned mr = rnd(s, N(migrant_regions));
    uint32_t region = f->local ? 320281 : migrant_regions[mr];
    int y, m, d;
    cpx_civil_from_days(born, &y, &m, &d);
    if (id_known) {
        char id[CPX_IDNUM_LEN + 1];
        if (cpx_idnum_make(region, y, m, d, rnd(s, 500), f->male, id) == 0)
            mi->id_number = xprintf(s, "%s", id);
    } else {
        mi->id_unknown_reason = unknown_reason;
    }
    mi->name = person_name(s);
    f->name = mi->name;
    mi->sex = f->male ? CPX__V1__SEX__MALE : CPX__V1__SEX__FEMALE;
    mi->birth_date = new_date(s, born);
    bool street = strstr(f->town->name, "街道") != NULL;
    const char *village = PICK(s, village_stems);
    const char *suffix = village_suffix(s, street);
    if (!id_known && unknown_reason == CPX__V1__ID_UNKNOWN_REASON__NOT_REGISTERED)
        mi->household_registration = xprintf(s, "无户籍");
    else if (f->local)
        mi->household_registration = xprintf(s, "江苏省江阴市%s%s%s", f->town->name, village, suffix);
    else
        mi->household_registration = xprintf(s, "%s", migrant_places[mr]);
    if (street)
        mi->current_address = xprintf(s, "江苏省江阴市%s%s%u号%u幢%u室", f->town->name,
                                      PICK(s, roads), 1 + rnd(s, 300), 1 + rnd(s, 30),
                                      101 + rnd(s, 6) * 100 + rnd(s, 4));
    else
        mi->current_address = xprintf(s, "江苏省江阴市%s%s%s%u组%u号", f->town->name, village,
                                      suffix, 1 + rnd(s, 20), 1 + rnd(s, 99));
    mi->town = xprintf(s, "%s", f->town->code);
    mi->village = xprintf(s, "%s%s", village, suffix);
}

/* ---- discovery reports ------------------------------------------------------------------- */

static const int channels[] = {
    CPX__V1__CHANNEL__HOTLINE,  CPX__V1__CHANNEL__POLICE_110, CPX__V1__CHANNEL__RESCUE_LINE_24H,
    CPX__V1__CHANNEL__SCHOOL,   CPX__V1__CHANNEL__HOSPITAL,   CPX__V1__CHANNEL__HOME_VISIT,
    CPX__V1__CHANNEL__WALK_IN,
};

static int role_for(cpx_synth_t *s, int channel)
{
    static const int hotline[] = {CPX__V1__REPORTER_ROLE__HOTLINE_OPERATOR,
                                  CPX__V1__REPORTER_ROLE__NEIGHBOUR, CPX__V1__REPORTER_ROLE__RELATIVE,
                                  CPX__V1__REPORTER_ROLE__SELF, CPX__V1__REPORTER_ROLE__OTHER_REPORTER};
    static const int police[] = {CPX__V1__REPORTER_ROLE__POLICE_OFFICER,
                                 CPX__V1__REPORTER_ROLE__NEIGHBOUR, CPX__V1__REPORTER_ROLE__OTHER_REPORTER};
    static const int walkin[] = {CPX__V1__REPORTER_ROLE__RELATIVE, CPX__V1__REPORTER_ROLE__NEIGHBOUR,
                                 CPX__V1__REPORTER_ROLE__SELF, CPX__V1__REPORTER_ROLE__OTHER_REPORTER};
    static const int school[] = {CPX__V1__REPORTER_ROLE__TEACHER, CPX__V1__REPORTER_ROLE__TEACHER,
                                 CPX__V1__REPORTER_ROLE__SELF};
    static const int visit[] = {CPX__V1__REPORTER_ROLE__COMMUNITY_WORKER,
                                CPX__V1__REPORTER_ROLE__COMMUNITY_WORKER,
                                CPX__V1__REPORTER_ROLE__RELATIVE};
    switch (channel) {
    case CPX__V1__CHANNEL__HOTLINE:
    case CPX__V1__CHANNEL__RESCUE_LINE_24H: return PICK(s, hotline);
    case CPX__V1__CHANNEL__POLICE_110: return PICK(s, police);
    case CPX__V1__CHANNEL__SCHOOL: return PICK(s, school);
    case CPX__V1__CHANNEL__HOSPITAL: return CPX__V1__REPORTER_ROLE__DOCTOR;
    case CPX__V1__CHANNEL__HOME_VISIT: return PICK(s, visit);
    default: return PICK(s, walkin);
    }
}

static bool duty(int role)
{
    return role == CPX__V1__REPORTER_ROLE__TEACHER || role == CPX__V1__REPORTER_ROLE__DOCTOR ||
           role == CPX__V1__REPORTER_ROLE__COMMUNITY_WORKER ||
           role == CPX__V1__REPORTER_ROLE__RELATIVE;
}

static const char *sender_for(cpx_synth_t *s, int channel, const struct town *t)
{
    switch (channel) {
    case CPX__V1__CHANNEL__SCHOOL: return "EDUCATION";
    case CPX__V1__CHANNEL__HOSPITAL: return "HEALTH";
    case CPX__V1__CHANNEL__POLICE_110: return "POLICE";
    case CPX__V1__CHANNEL__HOME_VISIT: return t->code;
    case CPX__V1__CHANNEL__WALK_IN: return chance(s, 50) ? "CIVIL_AFFAIRS" : t->code;
    default: return "CIVIL_AFFAIRS";
    }
}

static char *organisation(cpx_synth_t *s, int role, const struct town *t, const char *village)
{
    switch (role) {
    case CPX__V1__REPORTER_ROLE__TEACHER:
        return xprintf(s, "江阴市%s%s", t->name, PICK(s, schools));
    case CPX__V1__REPORTER_ROLE__DOCTOR: {
        static const char *const h[] = {"江阴市人民医院", "江阴市中医院", "江阴市妇幼保健院",
                                        "江阴市第三人民医院"};
        return xprintf(s, "%s", PICK(s, h));
    }
    case CPX__V1__REPORTER_ROLE__COMMUNITY_WORKER:
        return xprintf(s, "%s%s", village, strstr(village, "社区") ? "居民委员会" : "村民委员会");
    case CPX__V1__REPORTER_ROLE__POLICE_OFFICER:
        return xprintf(s, "江阴市公安局%s派出所", t->name);
    case CPX__V1__REPORTER_ROLE__HOTLINE_OPERATOR:
        return xprintf(s, "江阴市未成年人救助保护中心");
    default:
        return NULL;
    }
}

static void add_enum(cpx_synth_t *s, int **arr, size_t *n, int v)
{
    for (size_t i = 0; i < *n; i++)
        if ((*arr)[i] == v)
            return;
    int *na = xalloc(s, sizeof(int) * (*n + 1));
    if (*n)
        memcpy(na, *arr, sizeof(int) * *n);
    na[*n] = v;
    free(*arr);
    *arr = na;
    (*n)++;
}

#define ADD_ENUM(s, arr, n, v) add_enum((s), (int **)&(arr), &(n), (v))

static Cpx__V1__CategoryDetail *add_category(cpx_synth_t *s, Cpx__V1__DiscoveryReport *r, int cat)
{
    for (size_t i = 0; i < r->n_categories; i++)
        if (r->categories[i]->category == (Cpx__V1__Category)cat)
            return NULL;
    Cpx__V1__CategoryDetail **arr = xalloc(s, sizeof *arr * (r->n_categories + 1));
    if (r->n_categories)
        memcpy(arr, r->categories, sizeof *arr * r->n_categories);
    free(r->categories);
    r->categories = arr;
    Cpx__V1__CategoryDetail *cd = new_msg(s, &cpx__v1__category_detail__descriptor);
    r->categories[r->n_categories++] = cd;
    cd->category = cat;
    return cd;
}

static Cpx__V1__HealthDetail *health(cpx_synth_t *s, Cpx__V1__DiscoveryReport *r)
{
    if (!r->health)
        r->health = new_msg(s, &cpx__v1__health_detail__descriptor);
    return r->health;
}

static int incapacitating(cpx_synth_t *s)
{
    static const int v[] = {
        CPX__V1__PARENT_SITUATION__DETAINED,      CPX__V1__PARENT_SITUATION__DETAINED,
        CPX__V1__PARENT_SITUATION__COMPULSORY_REHAB, CPX__V1__PARENT_SITUATION__SERIOUSLY_ILL,
        CPX__V1__PARENT_SITUATION__SEVERELY_DISABLED, CPX__V1__PARENT_SITUATION__MISSING,
        CPX__V1__PARENT_SITUATION__MISSING,       CPX__V1__PARENT_SITUATION__DEAD,
    };
    return PICK(s, v);
}

/* Builds the body; returns the envelope priority. */
static int fill_discovery(cpx_synth_t *s, cpx_envelope_t *e, Cpx__V1__DiscoveryReport *r,
                          int64_t created_ms)
{
    int64_t today = cpx_days_from_ms(created_ms);
    /* The scenario decides the rest: 0 abandoned infant in hospital, 1-5 the five
     * categories as the main one. */
    unsigned scenario = rnd(s, 100) < 4 ? 0 : 1 + rnd(s, 5);
    int channel = scenario == 0 ? CPX__V1__CHANNEL__HOSPITAL : channels[rnd(s, N(channels))];
    if (scenario == 1 + 2 /* HARMED */ && chance(s, 40))
        channel = chance(s, 50) ? CPX__V1__CHANNEL__POLICE_110 : CPX__V1__CHANNEL__RESCUE_LINE_24H;

    r->minor = new_msg(s, &cpx__v1__minor_identity__descriptor);
    minor_facts_t mf;
    int64_t born;
    if (scenario == 0) {
        born = today - 1 - rnd(s, 20);
        fill_minor(s, r->minor, born, today, false, CPX__V1__ID_UNKNOWN_REASON__NOT_REGISTERED, &mf);
        free(r->minor->name);
        r->minor->name = (char *)protobuf_c_empty_string;
        r->minor->name = xprintf(s, "无名氏%u号", 1 + rnd(s, 99));
        mf.name = r->minor->name;
    } else {
        int min_age = channel == CPX__V1__CHANNEL__SCHOOL ? 6 : 0;
        born = birth_day(s, today, min_age, 17);
        bool known = chance(s, 90);
        static const int reasons[] = {CPX__V1__ID_UNKNOWN_REASON__NOT_DISCLOSED,
                                      CPX__V1__ID_UNKNOWN_REASON__REPORTER_DOES_NOT_KNOW,
                                      CPX__V1__ID_UNKNOWN_REASON__NOT_REGISTERED,
                                      CPX__V1__ID_UNKNOWN_REASON__FOREIGN_OR_OTHER};
        fill_minor(s, r->minor, born, today, known, known ? 0 : PICK(s, reasons), &mf);
    }
    const char *sender = sender_for(s, channel, mf.town);
    fill_envelope(s, e, created_ms, sender, CPX__V1__PRIORITY__ROUTINE);

    r->channel = channel;
    r->reporter = new_msg(s, &cpx__v1__reporter__descriptor);
    int role = role_for(s, channel);
    r->reporter->role = role;
    r->reporter->duty_to_report = duty(role);
    r->reporter->name = role == CPX__V1__REPORTER_ROLE__SELF ? xprintf(s, "%s", mf.name) : person_name(s);
    r->reporter->phone = phone(s);
    char *org = organisation(s, role, mf.town, r->minor->village);
    if (org)
        r->reporter->organisation = org;

    text_t t;
    text_init(s, &t, 2048);
    r->observation = new_msg(s, &cpx__v1__observation__descriptor);
    r->observation->what = t.p;
    text_add(&t, "%s，%s，%d岁，现住%s。", mf.name, mf.male ? "男" : "女", mf.age,
             r->minor->current_address);
    bool danger = false;
    int priority = CPX__V1__PRIORITY__ROUTINE;

    /* main category, then sometimes a second one */
    unsigned cats[2] = {scenario == 0 ? 3u : scenario, 0};
    if (scenario == 0)
        cats[1] = 1;  /* STREET_OR_ORPHAN: parents not found */
    else if (chance(s, 25))
        cats[1] = 1 + rnd(s, 5);
    for (int ci = 0; ci < 2; ci++) {
        if (!cats[ci])
            continue;
        Cpx__V1__CategoryDetail *cd = add_category(s, r, (int)cats[ci]);
        if (!cd)
            continue;
        switch (cats[ci]) {
        case CPX__V1__CATEGORY__STREET_OR_ORPHAN:
            if (scenario == 0) {
                ADD_ENUM(s, cd->street, cd->n_street, CPX__V1__STREET_SITUATION__PARENTS_NOT_FOUND);
                cd->father = CPX__V1__PARENT_SITUATION__PARENT_UNKNOWN;
                cd->mother = CPX__V1__PARENT_SITUATION__PARENT_UNKNOWN;
            } else {
                int n = 1 + (int)rnd(s, 2);
                for (int i = 0; i < n; i++)
                    ADD_ENUM(s, cd->street, cd->n_street, 1 + (int)rnd(s, 6));
                for (size_t i = 0; i < cd->n_street; i++)
                    if (cd->street[i] == CPX__V1__STREET_SITUATION__ORPHAN) {
                        cd->father = CPX__V1__PARENT_SITUATION__DEAD;
                        cd->mother = CPX__V1__PARENT_SITUATION__DEAD;
                    }
            }
            for (size_t i = 0; i < cd->n_street; i++)
                text_add(&t, "%s。", street_text[cd->street[i]]);
            priority = priority < CPX__V1__PRIORITY__URGENT ? CPX__V1__PRIORITY__URGENT : priority;
            break;
        case CPX__V1__CATEGORY__GUARDIANSHIP_MISSING:
            cd->father = incapacitating(s);
            cd->mother = incapacitating(s);
            text_add(&t, "其父亲%s，母亲%s，孩子目前由%s临时照看，生活无人保障。",
                     incapacitating_text[cd->father], incapacitating_text[cd->mother],
                     chance(s, 50) ? "年迈的祖父母" : "邻居");
            priority = priority < CPX__V1__PRIORITY__URGENT ? CPX__V1__PRIORITY__URGENT : priority;
            break;
        case CPX__V1__CATEGORY__HARMED: {
            if (scenario == 0) {
                ADD_ENUM(s, cd->harm_types, cd->n_harm_types, CPX__V1__HARM_TYPE__ABANDONMENT);
                text_add(&t, "该婴儿被遗弃在医院走廊，身边留有字条，未找到其父母。");
            } else {
                int n = 1 + (int)rnd(s, 2);
                for (int i = 0; i < n; i++)
                    ADD_ENUM(s, cd->harm_types, cd->n_harm_types, 1 + (int)rnd(s, 7));
                for (size_t i = 0; i < cd->n_harm_types; i++)
                    text_add(&t, "%s。", harm_text[cd->harm_types[i]]);
            }
            danger = true;
            priority = CPX__V1__PRIORITY__IMMEDIATE;
            break;
        }
        case CPX__V1__CATEGORY__SPECIAL_HARDSHIP: {
            int n = 1 + (int)rnd(s, 2);
            for (int i = 0; i < n; i++)
                ADD_ENUM(s, cd->hardships, cd->n_hardships, 1 + (int)rnd(s, 3));
            Cpx__V1__HealthDetail *h = health(s, r);
            for (size_t i = 0; i < cd->n_hardships; i++) {
                text_add(&t, "%s。", hardship_text[cd->hardships[i]]);
                switch (cd->hardships[i]) {
                case CPX__V1__HARDSHIP__SERIOUS_ILLNESS: {
                    int ill = 1 + (int)rnd(s, 9);
                    ADD_ENUM(s, h->illnesses, h->n_illnesses, ill);
                    if (!h->notes || !*h->notes)
                        h->notes = xprintf(s, "经医院确诊为%s，正在接受治疗。", illness_text[ill]);
                    break;
                }
                case CPX__V1__HARDSHIP__SEVERE_DISABILITY:
                    h->disability_grade = 1 + rnd(s, 2);
                    break;
                default:
                    break;
                }
            }
            static const int econ[] = {CPX__V1__FAMILY_ECONOMY__SUBSISTENCE_ALLOWANCE,
                                       CPX__V1__FAMILY_ECONOMY__LOW_INCOME,
                                       CPX__V1__FAMILY_ECONOMY__ILLNESS_IMPOVERISHED};
            h->family_economy = PICK(s, econ);
            break;
        }
        case CPX__V1__CATEGORY__OTHER:
            cd->other_reason = xprintf(s, "%s", PICK(s, other_reasons));
            text_add(&t, "%s。", cd->other_reason);
            break;
        }
    }

    /* circumstances */
    if (scenario == 0) {
        ADD_ENUM(s, r->circumstances, r->n_circumstances, CPX__V1__CIRCUMSTANCE__ABANDONED_INFANT);
        ADD_ENUM(s, r->circumstances, r->n_circumstances,
                 CPX__V1__CIRCUMSTANCE__NO_HOUSEHOLD_REGISTRATION);
    } else {
        if (mf.age >= 7 && mf.age <= 15 && chance(s, channel == CPX__V1__CHANNEL__SCHOOL ? 50 : 10)) {
            ADD_ENUM(s, r->circumstances, r->n_circumstances, CPX__V1__CIRCUMSTANCE__SCHOOL_DROPOUT);
            text_add(&t, "孩子已连续多周未到校上课。");
        }
        if (chance(s, 20)) {
            ADD_ENUM(s, r->circumstances, r->n_circumstances, CPX__V1__CIRCUMSTANCE__LEFT_BEHIND);
            text_add(&t, "父母常年在外地务工。");
        }
        if (!mf.local)
            ADD_ENUM(s, r->circumstances, r->n_circumstances, CPX__V1__CIRCUMSTANCE__MIGRANT_CHILD);
        if (mf.age >= 16 && chance(s, 50)) {
            ADD_ENUM(s, r->circumstances, r->n_circumstances,
                     CPX__V1__CIRCUMSTANCE__NEEDS_SKILLS_TRAINING);
            text_add(&t, "孩子已满十六周岁，本人希望参加职业技能培训。");
        }
        if (!mf.id_known && r->minor->id_unknown_reason == CPX__V1__ID_UNKNOWN_REASON__NOT_REGISTERED)
            ADD_ENUM(s, r->circumstances, r->n_circumstances,
                     CPX__V1__CIRCUMSTANCE__NO_HOUSEHOLD_REGISTRATION);
        if (mf.age >= 12 && chance(s, 3))
            ADD_ENUM(s, r->circumstances, r->n_circumstances, CPX__V1__CIRCUMSTANCE__JUVENILE_OFFENCE);
        if (chance(s, 2))
            ADD_ENUM(s, r->circumstances, r->n_circumstances, CPX__V1__CIRCUMSTANCE__RETURNING_DROPOUT);
    }
    text_add(&t, "%s", danger ? "情况紧急，请公安机关立即出警处置，并通知民政部门做好临时安置准备。"
                              : "建议相关部门尽快上门核实情况，开展监护评估和需求评估，"
                                "并按职责做好帮扶和跟踪回访。");
    static const char *const carers[] = {"祖父母", "外祖父母", "姑姑", "舅舅", "邻居", "哥哥姐姐"};
    static const char *const income[] = {"打零工", "务农", "低保金", "亲友接济", "小本经营"};
    text_add(&t, "据了解，孩子平时主要由%s照顾，家中共有%u口人，主要经济来源为%s，"
                 "居住条件%s。", PICK(s, carers), 2 + rnd(s, 5), PICK(s, income),
             chance(s, 50) ? "较为简陋" : "一般");
    text_add(&t, "报告人已向当事人家庭说明情况，并承诺配合后续核查工作。");

    int64_t back = 10 * 60000LL + (int64_t)rnd(s, (unsigned)(7 * DAY_MS / 1000)) * 1000;
    r->observation->observed_ms = created_ms - back;
    r->observation->place = xprintf(s, "%s", r->minor->current_address);
    r->immediate_danger = danger;
    r->local_ref = xprintf(s, "%.3s-%u-%07u", sender, 2015 + rnd(s, 12), rnd(s, 10000000));
    if (danger) {
        add_recipient(s, e, "POLICE");
        add_recipient(s, e, "CIVIL_AFFAIRS");
    }
    return priority;
}

cpx_envelope_t *cpx_synth_discovery(cpx_synth_t *s, int64_t created_ms)
{
    cpx_envelope_t *volatile e = NULL;
    if (!s)
        return NULL;
    if (setjmp(s->oom)) {
        cpx_msg_free(e);
        return NULL;
    }
    e = new_msg(s, &cpx__v1__envelope__descriptor);
    Cpx__V1__DiscoveryReport *r = new_msg(s, &cpx__v1__discovery_report__descriptor);
    e->body_case = CPX__V1__ENVELOPE__BODY_DISCOVERY_REPORT;
    e->discovery_report = r;
    e->body_kind = CPX__V1__BODY_KIND__BODY_DISCOVERY_REPORT;
    int prio = fill_discovery(s, e, r, created_ms);
    e->priority = prio;
    return e;
}

cpx_envelope_t *cpx_synth_ordinary_report(cpx_synth_t *s, int64_t created_ms, const char *sender)
{
    cpx_envelope_t *e = cpx_synth_discovery(s, created_ms);
    char *snd = e && sender ? strdup(sender) : NULL;
    if (!e || (sender && !snd)) {
        cpx_msg_free(e);
        return NULL;
    }
    if (snd) {
        free(e->sender);
        e->sender = snd;
    }
    Cpx__V1__DiscoveryReport *dr = e->discovery_report;
    size_t w = 0;
    for (size_t c = 0; c < dr->n_circumstances; c++)
        if (dr->circumstances[c] != CPX__V1__CIRCUMSTANCE__JUVENILE_OFFENCE)
            dr->circumstances[w++] = dr->circumstances[c];
    dr->n_circumstances = w;
    for (size_t r = 0; r < e->n_recipients; r++)
        free(e->recipients[r]);
    free(e->recipients);
    e->recipients = NULL;
    e->n_recipients = 0;
    e->sensitivity = CPX__V1__SENSITIVITY__NORMAL;
    return e;
}

/* ---- other bodies ---------------------------------------------------------------------- */

static const int tasks[] = {
    CPX__V1__TASK__RESCUE_PROTECTION,  CPX__V1__TASK__EDUCATION_SUPPORT,
    CPX__V1__TASK__JUDICIAL_PROTECTION, CPX__V1__TASK__EMPLOYMENT_SUPPORT,
    CPX__V1__TASK__MEDICAL_PROTECTION, CPX__V1__TASK__PSYCHOLOGICAL_CARE,
};

static const char *const task_reason[] = {
    [CPX__V1__TASK__RESCUE_PROTECTION] = "监护缺失，需落实基本生活保障和临时监护安置",
    [CPX__V1__TASK__EDUCATION_SUPPORT] = "孩子辍学在家，需安排复学并落实教育资助",
    [CPX__V1__TASK__JUDICIAL_PROTECTION] = "孩子疑似遭受侵害，需依法调查处置并提供法律援助",
    [CPX__V1__TASK__EMPLOYMENT_SUPPORT] = "孩子已满十六周岁，需安排职业技能培训",
    [CPX__V1__TASK__MEDICAL_PROTECTION] = "孩子身患重病，需开通就医绿色通道",
    [CPX__V1__TASK__PSYCHOLOGICAL_CARE] = "孩子情绪低落，需开展心理疏导和爱心妈妈结对",
};

/* Sets up an envelope with body `body` of kind `kind`; returns the body. */
static void *start(cpx_synth_t *s, cpx_envelope_t *e, int kind, const ProtobufCMessageDescriptor *d)
{
    void *b = new_msg(s, d);
    e->body_case = kind;
    e->body_kind = kind;
    e->discovery_report = b;  /* every member of the body union is a pointer */
    return b;
}

static Cpx__V1__MinorIdentity *some_minor(cpx_synth_t *s, int64_t created_ms)
{
    int64_t today = cpx_days_from_ms(created_ms);
    Cpx__V1__MinorIdentity *mi = new_msg(s, &cpx__v1__minor_identity__descriptor);
    minor_facts_t mf;
    fill_minor(s, mi, birth_day(s, today, 0, 17), today, true, 0, &mf);
    return mi;
}

static void case_id(cpx_synth_t *s, cpx_envelope_t *e, int64_t created_ms)
{
    int y, m, d;
    cpx_civil_from_days(cpx_days_from_ms(created_ms), &y, &m, &d);
    e->case_id = xprintf(s, "JY-%04d-%06u", y, rnd(s, 1000000));
}

cpx_envelope_t *cpx_synth_assessment(cpx_synth_t *s, int64_t created_ms, const char *cid)
{
    cpx_envelope_t *volatile e = NULL;
    if (!s)
        return NULL;
    if (setjmp(s->oom)) {
        cpx_msg_free(e);
        return NULL;
    }
    e = new_msg(s, &cpx__v1__envelope__descriptor);
    const struct town *t = &towns[rnd(s, N(towns))];
    fill_envelope(s, e, created_ms, chance(s, 60) ? "CIVIL_AFFAIRS" : t->code,
                  CPX__V1__PRIORITY__ROUTINE);
    if (cid)
        e->case_id = xprintf(s, "%s", cid);
    else
        case_id(s, e, created_ms);
    Cpx__V1__Assessment *a = start(s, e, CPX__V1__ENVELOPE__BODY_ASSESSMENT,
                                   &cpx__v1__assessment__descriptor);
    a->guardianship = 1 + rnd(s, 3);
    a->risk = 1 + rnd(s, 4);
    int n = 1 + (int)rnd(s, 3);
    for (int i = 0; i < n; i++)
        ADD_ENUM(s, a->needs, a->n_needs, PICK(s, tasks));
    a->assessor = new_msg(s, &cpx__v1__assessor__descriptor);
    a->assessor->name = person_name(s);
    a->assessor->commissioned = chance(s, 40);
    a->assessor->organisation = a->assessor->commissioned
                                    ? xprintf(s, "江阴市%s社会工作服务中心", t->name)
                                    : xprintf(s, "江阴市未成年人救助保护中心");
    a->basis = xprintf(s, "入户走访%u次，与监护人、村（居）委会和学校分别面谈；"
                          "结合家庭监护状况、风险等级和需求进行综合评估。", 1 + rnd(s, 3));
    a->assessed_on = new_date(s, cpx_days_from_ms(created_ms));
    a->minor = some_minor(s, created_ms);
    if (a->risk >= CPX__V1__RISK_LEVEL__HIGH)
        e->priority = CPX__V1__PRIORITY__URGENT;
    return e;
}

static cpx_envelope_t *referral_to(cpx_synth_t *s, int64_t created_ms, const char *to, int task);

cpx_envelope_t *cpx_synth_referral(cpx_synth_t *s, int64_t created_ms, const char *to, int task)
{
    if (!s)
        return NULL;
    const cpx_resp_table_t *rt = cpx_resp_table_default();
    if (to && task && !cpx_resp_table_owns(rt, task, to))
        return NULL;
    if (!task) {
        int owned[N(tasks)];
        size_t n = 0;
        for (size_t i = 0; i < N(tasks); i++)
            if (!to || cpx_resp_table_owns(rt, tasks[i], to))
                owned[n++] = tasks[i];
        if (!n)
            return NULL;
        task = owned[rnd(s, (unsigned)n)];
    }
    if (!to)
        to = cpx_resp_table_dept(rt, task, rnd(s, (unsigned)cpx_resp_table_count(rt, task)));
    return referral_to(s, created_ms, to, task);
}

static cpx_envelope_t *referral_to(cpx_synth_t *s, int64_t created_ms, const char *to, int task)
{
    cpx_envelope_t *volatile e = NULL;
    if (setjmp(s->oom)) {
        cpx_msg_free(e);
        return NULL;
    }
    e = new_msg(s, &cpx__v1__envelope__descriptor);
    int prio = task == CPX__V1__TASK__JUDICIAL_PROTECTION ? CPX__V1__PRIORITY__IMMEDIATE
             : chance(s, 30) ? CPX__V1__PRIORITY__URGENT : CPX__V1__PRIORITY__ROUTINE;
    fill_envelope(s, e, created_ms, "CIVIL_AFFAIRS", prio);
    case_id(s, e, created_ms);
    add_recipient(s, e, to);
    Cpx__V1__Referral *r = start(s, e, CPX__V1__ENVELOPE__BODY_REFERRAL, &cpx__v1__referral__descriptor);
    r->to = xprintf(s, "%s", to);
    r->task = task;
    r->reason = xprintf(s, "%s", task_reason[task]);
    r->due_by_ms = created_ms + (prio == CPX__V1__PRIORITY__IMMEDIATE ? DAY_MS / 24
                                 : (int64_t)(1 + rnd(s, 14)) * DAY_MS);
    r->priority = prio;
    r->local_ref = xprintf(s, "MZ-REF-%07u", rnd(s, 10000000));
    return e;
}

static int action_for(cpx_synth_t *s, const char *sender)
{
    static const struct {
        const char *dept;
        int actions[4];
    } map[] = {
        {"CIVIL_AFFAIRS", {CPX__V1__ACTION__LIVING_ALLOWANCE, CPX__V1__ACTION__TEMPORARY_SHELTER,
                           CPX__V1__ACTION__GUARDIANSHIP_SUPERVISION, CPX__V1__ACTION__ONE_OFF_MEDICAL_AID}},
        {"EDUCATION", {CPX__V1__ACTION__SCHOOL_ENROLMENT, CPX__V1__ACTION__EDUCATION_AID,
                       CPX__V1__ACTION__DROPOUT_NOTIFICATION, CPX__V1__ACTION__SCHOOL_ENROLMENT}},
        {"POLICE", {CPX__V1__ACTION__POLICE_INTERVENTION, CPX__V1__ACTION__HOUSEHOLD_REGISTRATION,
                    CPX__V1__ACTION__POLICE_INTERVENTION, CPX__V1__ACTION__TEMPORARY_SHELTER}},
        {"PROCURATORATE", {CPX__V1__ACTION__PROSECUTION, CPX__V1__ACTION__LEGAL_AID,
                           CPX__V1__ACTION__PROSECUTION, CPX__V1__ACTION__GUARDIANSHIP_TRANSFER}},
        {"COURT", {CPX__V1__ACTION__GUARDIANSHIP_TRANSFER, CPX__V1__ACTION__GUARDIAN_APPOINTED,
                   CPX__V1__ACTION__GUARDIANSHIP_TRANSFER, CPX__V1__ACTION__LEGAL_AID}},
        {"JUSTICE", {CPX__V1__ACTION__LEGAL_AID, CPX__V1__ACTION__LEGAL_AID,
                     CPX__V1__ACTION__FAMILY_GUIDANCE, CPX__V1__ACTION__LEGAL_AID}},
        {"HRSS", {CPX__V1__ACTION__SKILLS_TRAINING, CPX__V1__ACTION__JOB_FOR_FAMILY_MEMBER,
                  CPX__V1__ACTION__SKILLS_TRAINING, CPX__V1__ACTION__JOB_FOR_FAMILY_MEMBER}},
        {"HEALTH", {CPX__V1__ACTION__MEDICAL_TREATMENT, CPX__V1__ACTION__MEDICAL_TREATMENT,
                    CPX__V1__ACTION__MEDICAL_TREATMENT, CPX__V1__ACTION__MEDICAL_TREATMENT}},
        {"WOMENS_FED", {CPX__V1__ACTION__LOVING_MOTHER_PAIRING, CPX__V1__ACTION__COUNSELLING,
                        CPX__V1__ACTION__FAMILY_GUIDANCE, CPX__V1__ACTION__SOCIAL_WORK}},
    };
    for (size_t i = 0; i < N(map); i++)
        if (!strcmp(map[i].dept, sender))
            return map[i].actions[rnd(s, 4)];
    static const int any[] = {CPX__V1__ACTION__COUNSELLING, CPX__V1__ACTION__SOCIAL_WORK,
                              CPX__V1__ACTION__FAMILY_GUIDANCE, CPX__V1__ACTION__OTHER_ACTION};
    return PICK(s, any);
}

cpx_envelope_t *cpx_synth_disposition(cpx_synth_t *s, int64_t created_ms,
                                      const uint8_t referral_id[16], const char *sender)
{
    cpx_envelope_t *volatile e = NULL;
    if (!s || !referral_id || !sender)
        return NULL;
    if (setjmp(s->oom)) {
        cpx_msg_free(e);
        return NULL;
    }
    e = new_msg(s, &cpx__v1__envelope__descriptor);
    fill_envelope(s, e, created_ms, sender, CPX__V1__PRIORITY__ROUTINE);
    case_id(s, e, created_ms);
    e->in_reply_to.data = xalloc(s, 16);
    memcpy(e->in_reply_to.data, referral_id, 16);
    e->in_reply_to.len = 16;
    Cpx__V1__Disposition *d = start(s, e, CPX__V1__ENVELOPE__BODY_DISPOSITION,
                                    &cpx__v1__disposition__descriptor);
    d->referral_id.data = xalloc(s, 16);
    memcpy(d->referral_id.data, referral_id, 16);
    d->referral_id.len = 16;
    d->action = action_for(s, sender);
    static const int st[] = {CPX__V1__DISPOSITION_STATUS__DISPOSITION_ACCEPTED, CPX__V1__DISPOSITION_STATUS__DISPOSITION_IN_PROGRESS,
                             CPX__V1__DISPOSITION_STATUS__DISPOSITION_DONE, CPX__V1__DISPOSITION_STATUS__DISPOSITION_DONE,
                             CPX__V1__DISPOSITION_STATUS__DISPOSITION_DECLINED};
    d->status = PICK(s, st);
    if (d->status == CPX__V1__DISPOSITION_STATUS__DISPOSITION_DECLINED)
        d->decline_reason = xprintf(s, "经核实，该事项不属于本部门职责范围，建议转交%s处理。",
                                    chance(s, 50) ? "民政局" : "所在镇（街道）");
    int64_t today = cpx_days_from_ms(created_ms);
    if (d->action == CPX__V1__ACTION__ONE_OFF_MEDICAL_AID) {
        d->amount_fen = 1000000;
        d->illness = 1 + rnd(s, 8);
        d->family_economy = 2 + rnd(s, 3);
        d->notes = xprintf(s, "一次性医疗慈善救助金壹万元，已于%d日内拨付到户。", 1 + (int)rnd(s, 10));
    } else if (d->action == CPX__V1__ACTION__LIVING_ALLOWANCE) {
        d->amount_fen = 100 * (1500 + rnd(s, 500));
        d->family_economy = 2 + rnd(s, 3);
        d->effective_from = new_date(s, today);
        d->effective_to = new_date(s, today + 365);
        d->notes = xprintf(s, "按散居孤儿标准按月发放基本生活费，父母服刑或戒毒期满时停发。");
    } else {
        d->notes = xprintf(s, "已安排专人对接，%s。", chance(s, 50) ? "首次服务已完成" : "将按计划持续跟进");
    }
    d->minor = some_minor(s, created_ms);
    return e;
}

cpx_envelope_t *cpx_synth_follow_up(cpx_synth_t *s, int64_t created_ms)
{
    cpx_envelope_t *volatile e = NULL;
    if (!s)
        return NULL;
    if (setjmp(s->oom)) {
        cpx_msg_free(e);
        return NULL;
    }
    e = new_msg(s, &cpx__v1__envelope__descriptor);
    const struct town *t = &towns[rnd(s, N(towns))];
    fill_envelope(s, e, created_ms, t->code, CPX__V1__PRIORITY__ROUTINE);
    case_id(s, e, created_ms);
    Cpx__V1__FollowUp *f = start(s, e, CPX__V1__ENVELOPE__BODY_FOLLOW_UP, &cpx__v1__follow_up__descriptor);
    f->visit_date = new_date(s, cpx_days_from_ms(created_ms) - rnd(s, 5));
    f->visitor = person_name(s);
    f->outcome = 1 + rnd(s, 4);
    static const char *const notes[] = {
        [1] = "孩子生活稳定，按时上学，监护人能够履行照料职责。",
        [2] = "孩子情况明显好转，学习成绩有所提高，情绪开朗。",
        [3] = "监护人照料不够到位，孩子卫生状况较差，需加强监护指导。",
        [4] = "孩子再次出现离家现象，监护状况恶化，建议重新评估风险等级。",
    };
    f->notes = xprintf(s, "%s", notes[f->outcome]);
    f->recommend_close = f->outcome == CPX__V1__VISIT_OUTCOME__IMPROVED && chance(s, 50);
    return e;
}

cpx_envelope_t *cpx_synth_release_notice(cpx_synth_t *s, int64_t created_ms)
{
    cpx_envelope_t *volatile e = NULL;
    if (!s)
        return NULL;
    if (setjmp(s->oom)) {
        cpx_msg_free(e);
        return NULL;
    }
    e = new_msg(s, &cpx__v1__envelope__descriptor);
    Cpx__V1__ReleaseNotice *r = start(s, e, CPX__V1__ENVELOPE__BODY_RELEASE_NOTICE,
                                      &cpx__v1__release_notice__descriptor);
    r->kind = 1 + rnd(s, 3);
    fill_envelope(s, e, created_ms, r->kind == CPX__V1__RELEASE_KIND__REHAB_ENDED ? "POLICE" : "JUSTICE",
                  CPX__V1__PRIORITY__URGENT);
    add_recipient(s, e, "CIVIL_AFFAIRS");
    int64_t today = cpx_days_from_ms(created_ms);
    bool father = chance(s, 70);
    r->parent_role = father ? CPX__V1__PARENT_ROLE__FATHER : CPX__V1__PARENT_ROLE__MOTHER;
    int64_t pborn = birth_day(s, today, 25, 50);
    int y, m, d;
    cpx_civil_from_days(pborn, &y, &m, &d);
    char id[CPX_IDNUM_LEN + 1];
    if (cpx_idnum_make(chance(s, 80) ? 320281 : PICK(s, migrant_regions), y, m, d, rnd(s, 500),
                       father, id) == 0)
        r->parent_id_number = xprintf(s, "%s", id);
    r->parent_name = person_name(s);
    r->release_date = new_date(s, today + rnd(s, 30));
    int64_t cborn = birth_day(s, today, 0, 17);
    cpx_civil_from_days(cborn, &y, &m, &d);
    if (cpx_idnum_make(320281, y, m, d, rnd(s, 500), chance(s, 50), id) == 0)
        r->minor_id_number = xprintf(s, "%s", id);
    return e;
}

int cpx_synth_dummy_sign(cpx_envelope_t *env)
{
    if (!env)
        return CPX_ERR_ARG;
    Cpx__V1__Signature *sig = calloc(1, sizeof *sig);
    uint8_t *kid = malloc(8), *ed = malloc(64);
    if (!sig || !kid || !ed) {
        free(sig);
        free(kid);
        free(ed);
        return CPX_ERR_NOMEM;
    }
    cpx__v1__signature__init(sig);
    memset(kid, 0x5a, 8);
    memset(ed, 0xa5, 64);
    sig->key_id = (ProtobufCBinaryData){8, kid};
    sig->ed25519 = (ProtobufCBinaryData){64, ed};
    cpx_msg_free(env->signature);
    env->signature = sig;
    return CPX_OK;
}

cpx_synth_t *cpx_synth_new(uint64_t seed)
{
    cpx_synth_t *s = calloc(1, sizeof *s);
    if (s)
        s->state = seed;
    return s;
}

void cpx_synth_destroy(cpx_synth_t **p)
{
    if (p && *p) {
        free(*p);
        *p = NULL;
    }
}
