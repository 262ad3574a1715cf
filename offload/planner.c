#include "offload/planner.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "runtime/alloc.h"

#define DEFAULT_PREFETCH 2

void sr_tier_perf_default(sr_dev_kind kind, sr_tier_perf *p)
{
    if (kind == SR_DEV_CPU)
        *p = (sr_tier_perf){.mem_bw = 10e9, .flops = 50e9, .link_bw = 0, .latency = 0};
    else
        *p = (sr_tier_perf){.mem_bw = 600e9, .flops = 30e12, .link_bw = 24e9, .latency = 10e-6};
}

static const char *strategy_names[] = {"auto", "balanced", "balanced_low_0", "sequential", "map"};

const char *sr_strategy_name(sr_strategy s)
{
    return (unsigned)s < sizeof strategy_names / sizeof *strategy_names ? strategy_names[s] : "?";
}

int sr_strategy_parse(const char *s, sr_strategy *out)
{
    for (int i = 0; i < SR_STRATEGY_MAP; i++)   /* "map" comes from --device-map */
        if (!strcasecmp(s, strategy_names[i])) {
            *out = (sr_strategy)i;
            return 0;
        }
    return -1;
}

const char *sr_exec_name(sr_exec e)
{
    switch (e) {
    case SR_EXEC_AUTO: return "auto";
    case SR_EXEC_RESIDENT: return "resident";
    case SR_EXEC_STREAM: return "stream";
    case SR_EXEC_CPU: return "cpu";
    }
    return "?";
}

int sr_exec_parse(const char *s, sr_exec *out)
{
    if (!strcasecmp(s, "auto")) *out = SR_EXEC_AUTO;
    else if (!strcasecmp(s, "stream")) *out = SR_EXEC_STREAM;
    else if (!strcasecmp(s, "cpu")) *out = SR_EXEC_CPU;
    else return -1;
    return 0;
}

int sr_plan_unit_index(const sr_plan_unit *units, int n, int unit)
{
    for (int i = 0; i < n; i++)
        if (units[i].unit == unit) return i;
    return -1;
}

static const char *fmt_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int i = 0;
    while (v >= 1024 && i < 4) { v /= 1024; i++; }
    if (i == 0) snprintf(buf, len, "%llu B", (unsigned long long)n);
    else snprintf(buf, len, "%.2f %s", v, u[i]);
    return buf;
}

/* ---- placement ------------------------------------------------------------ */

typedef struct placer {
    const sr_plan_request *rq;
    int n_gpu, host;            /* tiers 0..n_gpu-1 are accelerators; host = n_gpu */
    int embed;                  /* unit index of the embedding, -1 if none */
    int head;                   /* unit index of a tied head, -1 if none */
    bool bundle;                /* the tied head goes wherever the embedding goes */
    int stream_tier;            /* host layers keep their KV there (-1: cpu exec) */
    uint64_t *cap;              /* [n_tiers] room for units */
    uint64_t *load;             /* [n_tiers] */
    int *tier;                  /* [n_units], -1 = not placed yet */
    char (*why)[192];           /* [n_units] */
} placer;

static const sr_plan_unit *U(const placer *P, int u) { return &P->rq->units[u]; }
static const char *T(const placer *P, int t) { return P->rq->tiers[t].name; }

/* Bytes unit u takes on tier t given what is placed so far.  A bundled tied
 * head is counted with its embedding. */
static uint64_t size_on(const placer *P, int u, int t)
{
    if (P->bundle && u == P->head) return 0;
    uint64_t s = U(P, u)->weight_bytes;
    if (U(P, u)->shared_bytes && !(P->embed >= 0 && P->tier[P->embed] == t))
        s += U(P, u)->shared_bytes;     /* a tied head away from the embedding: a copy */
    /* KV and derived buffers live where the unit runs: for a streamed layer
     * that is the staging accelerator (reserved by place_streaming) */
    if (!(P->stream_tier >= 0 && t == P->host && U(P, u)->unit >= 0))
        s += U(P, u)->kv_bytes + U(P, u)->derived_bytes;
    if (P->bundle && u == P->embed)
        s += U(P, P->head)->weight_bytes + U(P, P->head)->kv_bytes + U(P, P->head)->derived_bytes;
    return s;
}

static uint64_t room(const placer *P, int t)
{
    return P->load[t] >= P->cap[t] ? 0 : P->cap[t] - P->load[t];
}

static bool fits(const placer *P, int u, int t) { return size_on(P, u, t) <= room(P, t); }

/* Units that move between tiers after the fill (never the embedding and
 * its tied head). */
static bool movable(const placer *P, int u)
{
    return u != P->embed && u != P->head && !U(P, u)->shared_bytes;
}

static void put(placer *P, int u, int t, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(placer *P, int u, int t, const char *fmt, ...)
{
    P->load[t] += size_on(P, u, t);
    P->tier[u] = t;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(P->why[u], sizeof P->why[u], fmt, ap);
    va_end(ap);
    if (P->bundle && u == P->embed) {
        P->tier[P->head] = t;
        snprintf(P->why[P->head], sizeof P->why[P->head],
                 "tied head: shares the embedding's storage on %s (placed with it)", T(P, t));
    }
}

/* Takes unit u off its tier (to move it). */
static void take(placer *P, int u)
{
    P->load[P->tier[u]] -= size_on(P, u, P->tier[u]);
    P->tier[u] = -1;
}

/* The failure when unit u fits nowhere: what is left and what to change. */
static int fail_no_fit(const placer *P, int u, sr_error *err)
{
    char b[4][32], left[512] = "";
    size_t off = 0;
    for (int t = 0; t <= P->host && off < sizeof left; t++)
        off += (size_t)snprintf(left + off, sizeof left - off, "%s%s %s", t ? ", " : "",
                                T(P, t), fmt_bytes(room(P, t), b[0], sizeof b[0]));
    uint64_t rest = 0, kv = 0;
    for (int v = 0; v < P->rq->n_units; v++) {
        if (P->tier[v] < 0) rest += size_on(P, v, P->host);
        kv += U(P, v)->kv_bytes;
    }
    const sr_tier *h = &P->rq->tiers[P->host];
    uint64_t want = h->budget + (rest > room(P, P->host) ? rest - room(P, P->host) : 0);
    want = (want + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
    return sr_fail(err, "plan: %s (%s: weights %s + KV %s) fits on no tier; room left after the "
                   "reserves: %s.  Raise --max-memory (e.g. cpu=%lluMiB), lower --ctx or --batch "
                   "(KV cache %s in all) or add accelerators", U(P, u)->name,
                   fmt_bytes(size_on(P, u, P->host), b[1], sizeof b[1]),
                   fmt_bytes(U(P, u)->weight_bytes + U(P, u)->shared_bytes, b[2], sizeof b[2]),
                   fmt_bytes(U(P, u)->kv_bytes, b[3], sizeof b[3]), left,
                   (unsigned long long)(want >> 20), fmt_bytes(kv, b[0], sizeof b[0]));
}

static int put_host(placer *P, int u, const char *note, sr_error *err)
{
    char b[32];
    if (!fits(P, u, P->host)) return fail_no_fit(P, u, err);
    put(P, u, P->host, "%s%shost (%s left there)", note, note[0] ? "; " : "",
        fmt_bytes(room(P, P->host) - size_on(P, u, P->host), b, sizeof b));
    return 0;
}

/* First accelerator of list g[0..n) (from index `from`, wrapping) that fits u. */
static int first_fit(const placer *P, int u, const int *g, int n, int from)
{
    for (int i = 0; i < n; i++) {
        int t = g[(from + i) % n];
        if (fits(P, u, t)) return t;
    }
    return -1;
}

static int place_sequential(placer *P, sr_error *err)
{
    char b[2][32];
    int all[SR_MAX_DEVICES];
    for (int i = 0; i < P->n_gpu; i++) all[i] = i;
    int g = 0;
    for (int u = 0; u < P->rq->n_units; u++) {
        if (P->tier[u] >= 0) continue;      /* a head placed with its embedding */
        char note[160] = "";
        bool placed = false;
        while (g < P->n_gpu) {
            if (fits(P, u, g)) {
                put(P, u, g, "%s%ssequential: fits %s (%s left)", note, note[0] ? "; " : "",
                    T(P, g), fmt_bytes(room(P, g) - size_on(P, u, g), b[0], sizeof b[0]));
                placed = true;
                break;
            }
            if (size_on(P, u, g) > P->cap[g]) {
                /* could never fit g: place it further on without leaving g */
                int h = g + 1 < P->n_gpu ? first_fit(P, u, all + g + 1, P->n_gpu - g - 1, 0) : -1;
                if (h >= 0) {
                    put(P, u, h, "larger than %s's whole room (%s): first accelerator that "
                        "holds it", T(P, g), fmt_bytes(P->cap[g], b[0], sizeof b[0]));
                    placed = true;
                } else {
                    snprintf(note, sizeof note, "larger than the room of every accelerator");
                }
                break;
            }
            snprintf(note, sizeof note, "spilled: %s had %s left, the unit needs %s", T(P, g),
                     fmt_bytes(room(P, g), b[0], sizeof b[0]),
                     fmt_bytes(size_on(P, u, g), b[1], sizeof b[1]));
            g++;
        }
        if (!placed && put_host(P, u, note, err)) return -1;
    }
    return 0;
}

/* The share of accelerator g[0] when `bytes` are spread over g[0..m) as
 * evenly as their rooms allow (water-filling). */
static double first_share(const placer *P, const int *g, int m, uint64_t bytes)
{
    double r[SR_MAX_DEVICES], remaining = (double)bytes;
    for (int i = 0; i < m; i++) r[i] = (double)room(P, g[i]);
    double r0 = r[0];
    for (int i = 1; i < m; i++)     /* ascending (insertion sort) */
        for (int j = i; j > 0 && r[j] < r[j - 1]; j--) {
            double x = r[j]; r[j] = r[j - 1]; r[j - 1] = x;
        }
    for (int i = 0; i < m; i++) {
        if (r[i] * (m - i) >= remaining) return fmin(r0, remaining / (m - i));
        remaining -= r[i];
    }
    return r0;
}

/* Bytes of the units from u on that are still to be placed on g[0..ng),
 * leaving out those too large for any of them. */
static uint64_t bytes_from(const placer *P, int u, const int *g, int ng)
{
    uint64_t s = 0;
    for (int v = u; v < P->rq->n_units; v++) {
        if (P->tier[v] >= 0) continue;
        bool can = false;
        for (int i = 0; i < ng && !can; i++) can = size_on(P, v, g[i]) <= P->cap[g[i]];
        if (can) s += size_on(P, v, g[0]);
    }
    return s;
}

static uint64_t spread(const placer *P, const int *g, int ng)
{
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < ng; i++) {
        if (P->load[g[i]] < lo) lo = P->load[g[i]];
        if (P->load[g[i]] > hi) hi = P->load[g[i]];
    }
    return ng ? hi - lo : 0;
}

/* Moves unit u to tier t without a reason (trial moves of even_out). */
static void shift(placer *P, int u, int t)
{
    take(P, u);
    P->load[t] += size_on(P, u, t);
    P->tier[u] = t;
}

/* A chain from g[i] towards g[j]: each accelerator from g[i] on hands the
 * unit at its end facing g[j] to its neighbour, so g[i] loses a unit, g[j]
 * gains one and those between trade one for one (the execution order stays
 * contiguous).  Moves are made from the g[j] end, each into room the next
 * one freed.  Returns the number of moves made (recorded in moved[]/from[]
 * for undo), or -1 (undone) when a unit cannot move. */
static int chain(placer *P, const int *g, int i, int j, const int *first, const int *last,
                 int *moved, int *from)
{
    const int d = j > i ? 1 : -1;
    int n = 0;
    for (int k = j - d; k != i - d; k -= d) {
        int u = d > 0 ? last[g[k]] : first[g[k]], to = g[k + d];
        bool ok = u >= 0 && movable(P, u) && fits(P, u, to);
        /* it must stay on the near side of the units it joins (first/last
         * as before the chain: a neighbour only lost its far end) */
        if (ok) ok = d > 0 ? first[to] < 0 || first[to] > u : last[to] < u;
        if (!ok) {
            while (n > 0) { n--; shift(P, moved[n], from[n]); }
            return -1;
        }
        moved[n] = u;
        from[n++] = g[k];
        shift(P, u, to);
    }
    return n;
}

/* Moves units across the boundaries of the accelerators while that narrows
 * the spread of their loads.  A single move between neighbours is not always
 * enough: with equal layers, [3, 2, 1] layers become [2, 2, 2] only by
 * passing one layer down the chain, so every chain g[i] -> g[j] is tried. */
static void even_out(placer *P, const int *g, int ng)
{
    const int n = P->rq->n_units;
    int first[SR_MAX_DEVICES + 1], last[SR_MAX_DEVICES + 1];
    int moved[SR_MAX_DEVICES], from[SR_MAX_DEVICES];
    for (int iter = 0; iter < 4 * n && ng > 1; iter++) {
        /* the runs of movable units (a tied head placed with its embedding
         * sits at the far end of g[0]'s units and would hide its run's end) */
        for (int t = 0; t <= P->host; t++) first[t] = last[t] = -1;
        for (int u = 0; u < n; u++) {
            int t = P->tier[u];
            if (!movable(P, u)) continue;
            if (first[t] < 0) first[t] = u;
            last[t] = u;
        }
        uint64_t best = spread(P, g, ng);
        int best_i = -1, best_j = -1;
        for (int i = 0; i < ng; i++)
            for (int j = 0; j < ng; j++) {
                if (i == j) continue;
                int m = chain(P, g, i, j, first, last, moved, from);
                if (m < 0) continue;
                uint64_t sp = spread(P, g, ng);
                while (m > 0) { m--; shift(P, moved[m], from[m]); }
                if (sp < best) {
                    best = sp;
                    best_i = i;
                    best_j = j;
                }
            }
        if (best_i < 0) break;
        int m = chain(P, g, best_i, best_j, first, last, moved, from);
        for (int k = 0; k < m; k++) {   /* the same moves again, with their reasons */
            int u = moved[k], to = P->tier[u];
            take(P, u);
            put(P, u, to, "balanced: evened out between %s and %s", T(P, from[k]), T(P, to));
        }
    }
}

static int place_balanced(placer *P, const int *g, int ng, const int *over, int no,
                          sr_error *err)
{
    char b[2][32];
    const char *who = P->rq->strategy == SR_STRATEGY_BALANCED_LOW_0 ? "balanced_low_0"
                                                                     : "balanced";
    int k = 0;
    uint64_t filled = 0;
    double target = -1;
    for (int u = 0; u < P->rq->n_units; u++) {
        if (P->tier[u] >= 0) continue;      /* a head placed with its embedding */
        const char *note = ng ? "the accelerators are full" : "no accelerator";
        if (k < ng && size_on(P, u, g[k]) > P->cap[g[k]]) {
            /* larger than this accelerator's room: the next one that holds
             * it, without leaving this one for the units that follow */
            int t = first_fit(P, u, g, ng, k + 1);
            if (t >= 0) {
                put(P, u, t, "%s: larger than %s's room (%s); first accelerator that holds it",
                    who, T(P, g[k]), fmt_bytes(P->cap[g[k]], b[0], sizeof b[0]));
                continue;
            }
            note = "larger than the room of every accelerator";
        } else {
            bool placed = false;
            while (k < ng) {
                if (target < 0) target = first_share(P, g + k, ng - k, bytes_from(P, u, g + k, ng - k));
                uint64_t s = size_on(P, u, g[k]);
                /* the unit goes here while its middle is within the share */
                if (fits(P, u, g[k]) &&
                    (k == ng - 1 || filled == 0 || (double)filled + (double)s / 2 <= target)) {
                    put(P, u, g[k], "%s: in %s's share (%s)", who, T(P, g[k]),
                        fmt_bytes((uint64_t)target, b[0], sizeof b[0]));
                    filled += s;
                    placed = true;
                    break;
                }
                k++;
                filled = 0;
                target = -1;
            }
            if (placed) continue;
        }
        int t = no ? first_fit(P, u, over, no, 0) : -1;
        if (t >= 0) {
            put(P, u, t, "balanced_low_0: the other accelerators are full; %s takes the rest",
                T(P, t));
            continue;
        }
        bool none = true;
        for (int i = 0; i < ng; i++) none = none && P->cap[g[i]] == 0;
        if (put_host(P, u, ng && none ? "no accelerator has room after its reserve" : note, err))
            return -1;
    }
    even_out(P, g, ng);
    return 0;
}

static int place_map(placer *P, sr_error *err)
{
    char b[4][32];
    for (int u = 0; u < P->rq->n_units; u++) {
        int t = P->rq->map_tier[u];
        if (t < 0 || t > P->host)
            return sr_fail(err, "plan: device map: %s: tier %d does not exist", U(P, u)->name, t);
    }
    /* the embedding first, so a tied head knows whether it shares it */
    for (int pass = 0; pass < 2; pass++)
        for (int u = 0; u < P->rq->n_units; u++) {
            if ((u == P->embed) != (pass == 0) || P->tier[u] >= 0) continue;
            int t = P->rq->map_tier[u];
            if (!fits(P, u, t))
                return sr_fail(err, "plan: the device map puts %s (%s) on %s, which has only %s "
                               "left of its budget (%s with a reserve of %s); move it or raise "
                               "--max-memory %s=...", U(P, u)->name,
                               fmt_bytes(size_on(P, u, t), b[0], sizeof b[0]), T(P, t),
                               fmt_bytes(room(P, t), b[1], sizeof b[1]),
                               fmt_bytes(P->rq->tiers[t].budget, b[2], sizeof b[2]),
                               fmt_bytes(P->rq->tiers[t].reserve, b[3], sizeof b[3]), T(P, t));
            put(P, u, t, "device map%s", U(P, u)->shared_bytes ? " (tied head: own copy of the "
                                                                 "embedding)" : "");
        }
    return 0;
}

/* Units left on the host are offered to accelerators with room. */
static void backfill(placer *P)
{
    char b[32];
    for (int u = 0; u < P->rq->n_units; u++) {
        if (P->tier[u] != P->host || !movable(P, u)) continue;
        for (int t = 0; t < P->n_gpu; t++) {
            if (!fits(P, u, t)) continue;
            take(P, u);
            put(P, u, t, "offered the room left on %s (%s) after the fill", T(P, t),
                fmt_bytes(room(P, t), b, sizeof b));
            break;
        }
    }
}

static int run_strategy(placer *P, sr_error *err)
{
    int g[SR_MAX_DEVICES] = {0}, ng = 0, over[1] = {0}, no = 0;
    for (int u = 0; u < P->rq->n_units; u++) P->tier[u] = -1;
    for (int t = 0; t <= P->host; t++) P->load[t] = 0;
    switch (P->rq->strategy) {
    case SR_STRATEGY_MAP:
        return place_map(P, err);
    case SR_STRATEGY_SEQUENTIAL:
        if (place_sequential(P, err)) return -1;
        break;
    case SR_STRATEGY_BALANCED_LOW_0:
        for (int t = 1; t < P->n_gpu; t++) g[ng++] = t;
        if (P->n_gpu == 1) g[ng++] = 0;
        else if (P->n_gpu > 1) over[no++] = 0;
        if (place_balanced(P, g, ng, over, no, err)) return -1;
        break;
    case SR_STRATEGY_AUTO:
    case SR_STRATEGY_BALANCED:
        for (int t = 0; t < P->n_gpu; t++) g[ng++] = t;
        if (place_balanced(P, g, ng, over, 0, err)) return -1;
        break;
    }
    backfill(P);
    return 0;
}

/* ---- the plan from a placement --------------------------------------------- */

static double unit_seconds(const sr_tier_perf *p, const sr_plan_unit *u, int batch)
{
    double read = (double)(u->read_bytes ? u->read_bytes : u->weight_bytes + u->shared_bytes);
    double t_mem = p->mem_bw > 0 ? read / p->mem_bw : 0;
    double t_fl = p->flops > 0 ? 2.0 * (double)u->macs * batch / p->flops : 0;
    return fmax(t_mem, t_fl);
}

static double hop_seconds(const sr_plan_request *rq, int a, int b)
{
    double link = INFINITY, lat = 0;
    const sr_tier *ta = &rq->tiers[a], *tb = &rq->tiers[b];
    if (ta->gpu >= 0) { link = fmin(link, ta->perf.link_bw); lat = fmax(lat, ta->perf.latency); }
    if (tb->gpu >= 0) { link = fmin(link, tb->perf.link_bw); lat = fmax(lat, tb->perf.latency); }
    if (!(link > 0) || isinf(link)) return lat;
    return lat + (double)rq->hop_bytes * rq->batch / link;
}

/* Fills plan from the placement: entries, usage, streaming schedule, time. */
static int finish(const placer *P, int prefetch, sr_plan *plan, sr_error *err)
{
    const sr_plan_request *rq = P->rq;
    memset(plan, 0, sizeof *plan);
    plan->n_units = rq->n_units;
    plan->n_tiers = rq->n_tiers;
    plan->units = sr_calloc((size_t)rq->n_units, sizeof *plan->units);
    plan->tiers = sr_calloc((size_t)rq->n_tiers, sizeof *plan->tiers);
    if (!plan->units || !plan->tiers) {
        sr_plan_free(plan);
        return sr_fail(err, "plan: out of memory");
    }
    plan->strategy = rq->strategy;
    plan->stream.tier = -1;
    const int s = P->stream_tier;
    double compute = 0, hops = 0, copies = 0, stream_compute = 0, max_stream = 0;
    int prev = -1;
    for (int u = 0; u < rq->n_units; u++) {
        sr_plan_entry *e = &plan->units[u];
        const sr_plan_unit *pu = &rq->units[u];
        e->tier = P->tier[u];
        e->weight_bytes = pu->weight_bytes;
        if (pu->shared_bytes && !(P->embed >= 0 && P->tier[P->embed] == e->tier))
            e->weight_bytes += pu->shared_bytes;
        e->kv_bytes = pu->kv_bytes;
        e->derived_bytes = pu->derived_bytes;
        bool host = e->tier == P->host;
        e->exec = !host ? SR_EXEC_RESIDENT : (s >= 0 && pu->unit >= 0) ? SR_EXEC_STREAM
                                                                       : SR_EXEC_CPU;
        e->exec_tier = e->exec == SR_EXEC_STREAM ? s : e->tier;
        snprintf(e->reason, sizeof e->reason, "%s", P->why[u]);
        sr_tier_usage *w = &plan->tiers[e->tier];
        w->weights += e->weight_bytes;
        w->n_units++;
        plan->tiers[e->exec_tier].kv += e->kv_bytes;
        plan->tiers[e->exec_tier].derived += e->derived_bytes;
        e->seconds = unit_seconds(&rq->tiers[e->exec_tier].perf, pu, rq->batch);
        compute += e->seconds;
        if (e->exec == SR_EXEC_STREAM) {
            const sr_tier *st = &rq->tiers[s];
            double c = st->perf.link_bw > 0 ? (double)pu->weight_bytes / st->perf.link_bw : 0;
            copies += c;
            stream_compute += e->seconds;
            max_stream = fmax(max_stream, e->seconds);
            plan->stream.n_layers++;
            plan->stream.bytes_per_token += pu->weight_bytes;
            if (pu->weight_bytes > plan->stream.slot_bytes)
                plan->stream.slot_bytes = pu->weight_bytes;
        }
        if (prev >= 0 && prev != e->exec_tier) hops += hop_seconds(rq, prev, e->exec_tier);
        prev = e->exec_tier;
    }
    if (plan->stream.n_layers) {
        sr_stream_schedule *ss = &plan->stream;
        ss->tier = s;
        ss->prefetch = prefetch < ss->n_layers ? prefetch : ss->n_layers;
        ss->slots = ss->prefetch + 1 < ss->n_layers ? ss->prefetch + 1 : ss->n_layers;
        ss->copy_seconds = copies;
        ss->compute_seconds = stream_compute;
        plan->tiers[s].staging = (uint64_t)ss->slots * ss->slot_bytes;
    }
    /* the reserve is taken where units run (always on the host) */
    plan->tiers[P->host].reserve = rq->tiers[P->host].reserve;
    for (int u = 0; u < rq->n_units; u++) {
        int t = plan->units[u].exec_tier;
        plan->tiers[t].reserve = rq->tiers[t].reserve;
    }
    for (int t = 0; t < rq->n_tiers; t++) {
        sr_tier_usage *w = &plan->tiers[t];
        w->total = w->weights + w->kv + w->staging + w->derived + w->reserve;
        if (w->total > rq->tiers[t].budget) {     /* a bug, never a silent overcommit */
            char b[2][32];
            int rc = sr_fail(err, "plan: internal error: %s would hold %s of its %s budget",
                             rq->tiers[t].name, fmt_bytes(w->total, b[0], sizeof b[0]),
                             fmt_bytes(rq->tiers[t].budget, b[1], sizeof b[1]));
            sr_plan_free(plan);
            return rc;
        }
    }
    if (plan->stream.n_layers && plan->stream.prefetch >= 1)
        plan->seconds_per_step = fmax(compute + hops, copies + max_stream);
    else
        plan->seconds_per_step = compute + hops + copies;
    plan->host_exec = plan->stream.n_layers ? SR_EXEC_STREAM : SR_EXEC_CPU;
    plan->tokens_per_s = plan->seconds_per_step > 0 ? rq->batch / plan->seconds_per_step : 0;
    return 0;
}

static bool host_has_layers(const placer *P)
{
    for (int u = 0; u < P->rq->n_units; u++)
        if (P->tier[u] == P->host && U(P, u)->unit >= 0) return true;
    return false;
}

/* Placement with host layers streamed through slots on accelerator s: the
 * slots and the KV (+ derived buffers) of the streamed layers are taken out
 * of s's room first;
 * taking room out may push more layers to the host, so repeat until the
 * reservation covers them. */
static int place_streaming(placer *P, int s, int prefetch, const uint64_t *cap0, sr_error *err)
{
    uint64_t max_w = 0, n_layers = 0;
    for (int u = 0; u < P->rq->n_units; u++)
        if (U(P, u)->unit >= 0) {
            n_layers++;
            if (U(P, u)->weight_bytes > max_w) max_w = U(P, u)->weight_bytes;
        }
    /* finish() makes min(prefetch + 1, streamed layers) slots: a distance
     * past the layer count must not reserve room no slot will use */
    uint64_t slots = (uint64_t)prefetch + 1 < n_layers ? (uint64_t)prefetch + 1 : n_layers;
    uint64_t kv_reserved = 0;
    P->stream_tier = s;
    for (int iter = 0; iter <= P->rq->n_units + 1; iter++) {
        uint64_t need = slots * max_w + kv_reserved;
        if (need > cap0[s])
            return sr_fail(err, "stream: %s cannot hold %llu staging slots of %llu bytes plus the "
                           "KV cache of the streamed layers", P->rq->tiers[s].name,
                           (unsigned long long)slots, (unsigned long long)max_w);
        memcpy(P->cap, cap0, sizeof *P->cap * (size_t)P->rq->n_tiers);
        P->cap[s] -= need;
        if (run_strategy(P, err)) return -1;
        uint64_t kv = 0;
        for (int u = 0; u < P->rq->n_units; u++)
            if (P->tier[u] == P->host && U(P, u)->unit >= 0)
                kv += U(P, u)->kv_bytes + U(P, u)->derived_bytes;
        if (kv <= kv_reserved) return 0;
        kv_reserved = kv;
    }
    return sr_fail(err, "stream: the staging reservation did not settle");
}

static int check_request(const sr_plan_request *rq, sr_error *err)
{
    if (!rq->units || rq->n_units < 1) return sr_fail(err, "plan: no units to place");
    if (!rq->tiers || rq->n_tiers < 1 || rq->n_tiers > SR_MAX_DEVICES + 1)
        return sr_fail(err, "plan: need the host tier and at most %d accelerators",
                       SR_MAX_DEVICES);
    for (int t = 0; t < rq->n_tiers - 1; t++)
        if (rq->tiers[t].gpu < 0)
            return sr_fail(err, "plan: tier %d (%s) is not an accelerator; the host comes last", t,
                           rq->tiers[t].name);
    if (rq->tiers[rq->n_tiers - 1].gpu >= 0)
        return sr_fail(err, "plan: the last tier must be the host");
    if (rq->batch < 1) return sr_fail(err, "plan: batch must be >= 1");
    if (rq->prefetch > SR_MAX_PREFETCH)
        return sr_fail(err, "plan: prefetch distance %d is above %d", rq->prefetch,
                       SR_MAX_PREFETCH);
    if (rq->strategy == SR_STRATEGY_MAP && !rq->map_tier)
        return sr_fail(err, "plan: strategy map needs a device map");
    if (rq->host_exec != SR_EXEC_AUTO && rq->host_exec != SR_EXEC_STREAM &&
        rq->host_exec != SR_EXEC_CPU)
        return sr_fail(err, "plan: host execution must be auto, stream or cpu");
    for (int u = 0; u < rq->n_units; u++)
        for (int v = 0; v < u; v++)
            if (rq->units[u].unit == rq->units[v].unit)
                return sr_fail(err, "plan: unit %s listed twice", rq->units[u].name);
    const sr_tier *h = &rq->tiers[rq->n_tiers - 1];
    if (h->reserve > h->budget) {
        char b[2][32];
        return sr_fail(err, "plan: host budget %s (%s) is smaller than its reserve %s; raise "
                       "--max-memory cpu=... or lower --ctx / --batch",
                       fmt_bytes(h->budget, b[0], sizeof b[0]), h->budget_src,
                       fmt_bytes(h->reserve, b[1], sizeof b[1]));
    }
    return 0;
}

/* The accelerator for staging slots: the most room, ties to the highest index
 * (accelerator 0 usually also holds the embedding and the outputs). */
static int pick_stream_tier(const placer *P, const uint64_t *cap0)
{
    int best = -1;
    for (int t = 0; t < P->n_gpu; t++)
        if (best < 0 || cap0[t] >= cap0[best]) best = t;
    return best;
}

int sr_plan_make(const sr_plan_request *rq, sr_plan *plan, sr_error *err)
{
    memset(plan, 0, sizeof *plan);
    if (check_request(rq, err)) return -1;
    placer P = {.rq = rq, .n_gpu = rq->n_tiers - 1, .host = rq->n_tiers - 1,
                .embed = sr_plan_unit_index(rq->units, rq->n_units, SR_UNIT_EMBED),
                .head = -1, .stream_tier = -1};
    for (int u = 0; u < rq->n_units; u++)
        if (rq->units[u].shared_bytes) P.head = u;
    P.bundle = P.head >= 0 && P.embed >= 0 &&
               (rq->strategy != SR_STRATEGY_MAP || rq->map_tier[P.head] == rq->map_tier[P.embed]);
    uint64_t *cap0 = sr_calloc((size_t)rq->n_tiers, sizeof *cap0);
    P.cap = sr_calloc((size_t)rq->n_tiers, sizeof *P.cap);
    P.load = sr_calloc((size_t)rq->n_tiers, sizeof *P.load);
    P.tier = sr_calloc((size_t)rq->n_units, sizeof *P.tier);
    P.why = sr_calloc((size_t)rq->n_units, sizeof *P.why);
    int rc = -1;
    sr_plan alt = {0};
    if (!cap0 || !P.cap || !P.load || !P.tier || !P.why) {
        sr_fail(err, "plan: out of memory");
        goto done;
    }
    for (int t = 0; t < rq->n_tiers; t++)
        cap0[t] = rq->tiers[t].budget > rq->tiers[t].reserve
                      ? rq->tiers[t].budget - rq->tiers[t].reserve : 0;

    /* A: host layers on the CPU */
    memcpy(P.cap, cap0, sizeof *cap0 * (size_t)rq->n_tiers);
    if (run_strategy(&P, err)) goto done;
    bool streamable = host_has_layers(&P) && P.n_gpu > 0;
    int prefetch = rq->prefetch >= 0 ? rq->prefetch : DEFAULT_PREFETCH;
    if (!streamable || rq->host_exec == SR_EXEC_CPU) {
        if (finish(&P, 0, plan, err)) goto done;
        snprintf(plan->exec_reason, sizeof plan->exec_reason, "%s",
                 !host_has_layers(&P) ? "no decoder layer on the host"
                 : !P.n_gpu ? "no accelerator: host layers run on the CPU"
                            : "host layers run on the CPU (requested)");
        rc = 0;
        goto done;
    }
    if (finish(&P, 0, &alt, err)) goto done;

    /* B: host layers streamed through an accelerator */
    int s = pick_stream_tier(&P, cap0);
    sr_error serr;
    int src = place_streaming(&P, s, prefetch, cap0, &serr);
    if (src && rq->prefetch < 0 && prefetch > 1)  /* tight: double buffering */
        src = place_streaming(&P, s, prefetch = 1, cap0, &serr);
    if (src || finish(&P, prefetch, plan, &serr)) {
        if (rq->host_exec == SR_EXEC_STREAM) {
            sr_fail(err, "plan: --host-exec stream: %s", serr.msg);
            goto done;
        }
        *plan = alt;
        memset(&alt, 0, sizeof alt);
        snprintf(plan->exec_reason, sizeof plan->exec_reason,
                 "host layers run on the CPU: streaming is not possible (%s)", serr.msg);
        rc = 0;
        goto done;
    }
    double ts = plan->seconds_per_step, tc = alt.seconds_per_step;
    if (rq->host_exec == SR_EXEC_AUTO && tc < ts) {
        sr_plan_free(plan);
        *plan = alt;
        memset(&alt, 0, sizeof alt);
        snprintf(plan->exec_reason, sizeof plan->exec_reason,
                 "auto: host layers run on the CPU, predicted %.3f ms per step against %.3f ms "
                 "streaming through %s (batch %d)", tc * 1e3, ts * 1e3, rq->tiers[s].name,
                 rq->batch);
    } else {
        snprintf(plan->exec_reason, sizeof plan->exec_reason,
                 "%s: host layers stream through %s, predicted %.3f ms per step against %.3f ms "
                 "on the CPU (batch %d)", rq->host_exec == SR_EXEC_AUTO ? "auto" : "requested",
                 rq->tiers[s].name, ts * 1e3, tc * 1e3, rq->batch);
    }
    rc = 0;
done:
    sr_plan_free(&alt);
    sr_free(cap0);
    sr_free(P.cap);
    sr_free(P.load);
    sr_free(P.tier);
    sr_free(P.why);
    return rc;
}

void sr_plan_free(sr_plan *plan)
{
    if (!plan) return;
    sr_free(plan->units);
    sr_free(plan->tiers);
    memset(plan, 0, sizeof *plan);
}
