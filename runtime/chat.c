#include "runtime/chat.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/alloc.h"
#include "runtime/log.h"

#define GRANITE_START_ROLE "<|start_of_role|>"
#define GRANITE_END_ROLE "<|end_of_role|>"
#define GRANITE_END_TEXT "<|end_of_text|>"

const char *sr_adapter_kind_name(sr_adapter_kind k)
{
    switch (k) {
    case SR_ADAPTER_LORA: return "LoRA";
    case SR_ADAPTER_ALORA: return "aLoRA";
    default: return "unknown";
    }
}

void sr_chat_free(sr_chat *chat)
{
    if (!chat) return;
    sr_free(chat->start_role);
    sr_free(chat->end_role);
    sr_free(chat->end_text);
    sr_free(chat->default_system);
    for (int i = 0; chat->adapters && i < chat->n_adapters; i++) sr_free(chat->adapters[i].invocation);
    sr_free(chat->adapters);
    memset(chat, 0, sizeof *chat);
}

static sr_adapter_kind kind_from_string(const char *s)
{
    if (!strcasecmp(s, "lora")) return SR_ADAPTER_LORA;
    if (!strcasecmp(s, "alora")) return SR_ADAPTER_ALORA;
    return SR_ADAPTER_UNKNOWN;
}

/* HF writes special tokens either as a string or as an AddedToken object. */
static const char *token_string(const json_t *v)
{
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) {
        const json_t *c = json_object_get(v, "content");
        if (json_is_string(c)) return json_string_value(c);
    }
    return NULL;
}

/* A Jinja single-quoted literal starting at s (after the quote) -> new
 * string with the common escapes resolved; NULL if unterminated. */
static char *jinja_literal(const char *s, const char *end)
{
    char *out = sr_malloc((size_t)(end - s) + 1);
    if (!out) return NULL;
    size_t n = 0;
    for (; s < end && *s != '\''; s++) {
        if (*s == '\\' && s + 1 < end) {
            s++;
            out[n++] = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
        } else {
            out[n++] = *s;
        }
    }
    if (s >= end) {
        sr_free(out);
        return NULL;
    }
    out[n] = 0;
    return out;
}

/* Value of 'key': '...' inside the entry text [p, end), or NULL. */
static char *entry_field(const char *p, const char *end, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *k = strstr(p, pat);
    if (!k || k >= end) return NULL;
    k += strlen(pat);
    while (k < end && (*k == ' ' || *k == ':')) k++;
    if (k >= end || *k != '\'') return NULL;
    return jinja_literal(k + 1, end);
}

/* The composer's `adapter_map` in the chat template:
 *   'NAME': {'token': '<|NAME|>', 'type': 'alora', 'invocation_text': '...'} */
static int kinds_from_template(const char *tmpl, const sr_config *cfg, sr_chat *chat, sr_error *err)
{
    int found = 0;
    for (int k = 0; k < cfg->num_adapters && cfg->adapter_names; k++) {
        char pat[512];
        snprintf(pat, sizeof pat, "'%s': {", cfg->adapter_names[k]);
        const char *p = strstr(tmpl, pat);
        if (!p) continue;
        p += strlen(pat);
        const char *end = strchr(p, '}');
        if (!end) continue;
        char *type = entry_field(p, end, "type");
        if (!type) continue;
        chat->adapters[k].kind = kind_from_string(type);
        sr_free(type);
        found++;
        if (chat->adapters[k].kind == SR_ADAPTER_ALORA) {
            const char *inv = strstr(p, "'invocation_text'");
            if (inv && inv < end) {
                chat->adapters[k].invocation = entry_field(p, end, "invocation_text");
                if (!chat->adapters[k].invocation)
                    return sr_fail(err, "chat_template: adapter %s: unterminated invocation_text",
                                   cfg->adapter_names[k]);
            }
        }
    }
    return found;
}

/* Which of the known Granite forms the template renders (chat.h); for
 * Granite 3.0 also its default system text, the {% else %} branch of its
 * loop over system messages.  -1 out of memory. */
static int template_style(const char *tmpl, sr_chat *chat)
{
    if (strstr(tmpl, "<|user|>") && strstr(tmpl, "<|assistant|>")) {
        chat->style = SR_CHAT_GRANITE_3_0;
        static const char open[] = "{% else %}<|system|>\n";
        const char *p = strstr(tmpl, open), *end = p ? strstr(p + strlen(open), "\n{%") : NULL;
        if (end) {
            p += strlen(open);
            if (!(chat->default_system = sr_strndup(p, (size_t)(end - p)))) return -1;
        }
    } else if (!strstr(tmpl, GRANITE_START_ROLE) &&
               (strstr(tmpl, "message['content']") || strstr(tmpl, "message.content") ||
                strstr(tmpl, "message[\"content\"]"))) {
        chat->unknown_template = true;  /* it renders messages, in some other form */
    }
    return 0;
}

static int parse_tokenizer_config(const char *text, const char *source, const sr_config *cfg,
                                  sr_chat *chat, bool kinds_known, sr_error *err)
{
    json_error_t je;
    json_t *root = json_loads(text, 0, &je);
    if (!root) return sr_fail(err, "%s: line %d: %s", source, je.line, je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = sr_fail(err, "%s: not a JSON object", source);
        goto done;
    }
    const json_t *eos = json_object_get(root, "eos_token");
    if (eos && !json_is_null(eos)) {
        const char *s = token_string(eos);
        if (!s || !*s) {
            rc = sr_fail(err, "%s: eos_token: expected a string or {\"content\": ...}", source);
            goto done;
        }
        sr_free(chat->end_text);
        if (!(chat->end_text = sr_strdup(s))) {
            rc = sr_fail(err, "%s: out of memory", source);
            goto done;
        }
    }
    const json_t *t = json_object_get(root, "chat_template");
    if (t) {
        /* a string, or HF's list of {"name", "template"} (the "default" one) */
        const char *tmpl = NULL;
        if (json_is_string(t)) {
            tmpl = json_string_value(t);
        } else if (json_is_array(t)) {
            size_t i;
            json_t *e;
            json_array_foreach(t, i, e) {
                const char *nm = json_string_value(json_object_get(e, "name"));
                const char *tp = json_string_value(json_object_get(e, "template"));
                if (tp && (!tmpl || (nm && !strcmp(nm, "default")))) tmpl = tp;
            }
        } else if (!json_is_null(t)) {
            rc = sr_fail(err, "%s: chat_template: expected a string or a list", source);
            goto done;
        }
        if (tmpl && template_style(tmpl, chat)) {
            rc = sr_fail(err, "%s: out of memory", source);
            goto done;
        }
        if (tmpl && !kinds_known) {
            int found = kinds_from_template(tmpl, cfg, chat, err);
            if (found < 0) {
                rc = sr_fail_prefix(err, "%s", source);
                goto done;
            }
            if (found > 0) chat->kinds_from = "chat_template";
        }
    }
done:
    json_decref(root);
    return rc;
}

/* config.json `adapter_kinds` (one string per adapter), if present; returns
 * 1 when it gave the kinds. */
static int kinds_from_config(const char *text, const sr_config *cfg, sr_chat *chat)
{
    json_t *root = json_loads(text, 0, NULL);
    const json_t *k = root ? json_object_get(root, "adapter_kinds") : NULL;
    int ok = 0;
    if (json_is_array(k) && json_array_size(k) == (size_t)cfg->num_adapters) {
        for (int i = 0; i < cfg->num_adapters; i++) {
            const char *s = json_string_value(json_array_get(k, (size_t)i));
            chat->adapters[i].kind = s ? kind_from_string(s) : SR_ADAPTER_UNKNOWN;
        }
        ok = 1;
    }
    json_decref(root);
    return ok;
}

int sr_chat_parse(const char *tokenizer_config, const char *config_json, const char *source,
                  const sr_config *cfg, sr_chat *chat, sr_error *err)
{
    memset(chat, 0, sizeof *chat);
    chat->start_role = sr_strdup(GRANITE_START_ROLE);
    chat->end_role = sr_strdup(GRANITE_END_ROLE);
    chat->end_text = sr_strdup(GRANITE_END_TEXT);
    chat->n_adapters = cfg->num_adapters;
    if (cfg->num_adapters > 0)
        chat->adapters = sr_calloc((size_t)cfg->num_adapters, sizeof *chat->adapters);
    if (!chat->start_role || !chat->end_role || !chat->end_text ||
        (cfg->num_adapters > 0 && !chat->adapters)) {
        sr_chat_free(chat);
        return sr_fail(err, "%s: chat format: out of memory", source);
    }
    bool kinds_known = config_json && cfg->num_adapters > 0 && kinds_from_config(config_json, cfg, chat);
    if (kinds_known) chat->kinds_from = "config.json";
    if (tokenizer_config &&
        parse_tokenizer_config(tokenizer_config, source, cfg, chat, kinds_known, err)) {
        sr_chat_free(chat);
        return -1;
    }
    return 0;
}

/* Whole file -> new NUL-terminated text; NULL with *missing set when the
 * file does not exist. */
static char *slurp(const char *path, bool *missing, sr_error *err)
{
    *missing = false;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) *missing = true;
        else sr_fail(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = sr_realloc(buf, cap);
            if (!nb) {
                sr_free(buf);
                fclose(f);
                sr_fail(err, "%s: out of memory", path);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        sr_free(buf);
        sr_fail(err, "%s: read error", path);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

int sr_chat_load(const char *model_dir, const sr_config *cfg, sr_chat *chat, sr_error *err)
{
    memset(chat, 0, sizeof *chat);
    char tc_path[4096], cfg_path[4096];
    snprintf(tc_path, sizeof tc_path, "%s/tokenizer_config.json", model_dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", model_dir);
    bool tc_missing, cfg_missing;
    sr_error_clear(err);
    char *tc = slurp(tc_path, &tc_missing, err);
    if (!tc && !tc_missing) return -1;
    char *cj = NULL;
    if (cfg->num_adapters > 0) {
        cj = slurp(cfg_path, &cfg_missing, err);
        if (!cj && !cfg_missing) {
            sr_free(tc);
            return -1;
        }
    }
    int rc = sr_chat_parse(tc, cj, tc_path, cfg, chat, err);
    if (!rc && chat->unknown_template)
        sr_warn("%s: chat_template is not a Granite form strata knows (it does not run Jinja): "
                "chat prompts use Granite 4's role markers; pass the prompt as is (strata run "
                "--raw) if the model expects another form", tc_path);
    sr_free(tc);
    sr_free(cj);
    return rc;
}

/* Growing output buffer of the renderer. */
typedef struct strbuf {
    char *p;
    size_t n, cap;
    bool oom;
} strbuf;

static void put(strbuf *b, const char *s)
{
    size_t k = strlen(s);
    if (b->oom) return;
    if (b->n + k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->n + k + 1 > cap) cap *= 2;
        char *np = sr_realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

/* Offset of the last occurrence of needle in hay, or -1. */
static int64_t last_occurrence(const char *hay, const char *needle)
{
    int64_t at = -1;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) at = p - hay;
    return at;
}

int sr_chat_render(const sr_chat *chat, const sr_chat_msg *msgs, size_t n,
                   bool add_generation_prompt, int adapter, sr_adapter_kind kind, char **text,
                   size_t *len, int64_t *ctrl_at, sr_error *err)
{
    *text = NULL;
    *len = 0;
    *ctrl_at = -1;
    if (adapter < 0 || adapter > chat->n_adapters)
        return sr_fail(err, "chat: adapter index %d is not in 0..%d", adapter, chat->n_adapters);
    const char *invocation = NULL;
    if (adapter > 0) {
        if (kind == SR_ADAPTER_UNKNOWN) kind = chat->adapters[adapter - 1].kind;
        invocation = kind == SR_ADAPTER_ALORA ? chat->adapters[adapter - 1].invocation : NULL;
    }
    /* aLoRA with an invocation text: the last user message containing it */
    size_t target = n;
    if (invocation && *invocation)
        for (size_t i = 0; i < n; i++)
            if (msgs[i].role && !strcmp(msgs[i].role, "user") && msgs[i].content &&
                strstr(msgs[i].content, invocation))
                target = i;
    strbuf b = {0};
    const bool g3 = chat->style == SR_CHAT_GRANITE_3_0;
    bool has_system = false;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) {
            sr_free(b.p);
            return sr_fail(err, "chat: message %zu has no %s", i, msgs[i].role ? "content" : "role");
        }
        has_system |= !strcmp(msgs[i].role, "system");
    }
    if (g3 && !has_system && chat->default_system) {
        put(&b, "<|system|>\n");
        put(&b, chat->default_system);
        put(&b, "\n");
    }
    for (size_t i = 0; i < n; i++) {
        const char *role = msgs[i].role, *end = "\n";
        if (!g3) {
            put(&b, chat->start_role);
            put(&b, role);
            put(&b, chat->end_role);
        } else if (!strcmp(role, "system") || !strcmp(role, "user")) {
            put(&b, !strcmp(role, "user") ? "<|user|>\n" : "<|system|>\n");
        } else if (!strcmp(role, "assistant")) {
            put(&b, "<|assistant|>\n");
            end = "";
        } else if (!strcmp(role, "assistant_tool_call") || !strcmp(role, "tool_response")) {
            put(&b, chat->start_role);
            put(&b, !strcmp(role, "tool_response") ? role : "assistant");
            put(&b, chat->end_role);
            if (strcmp(role, "tool_response")) put(&b, "<|tool_call|>");
        } else {
            continue;           /* a role the Granite 3.0 template leaves out */
        }
        if (i == target) *ctrl_at = (int64_t)b.n + last_occurrence(msgs[i].content, invocation);
        put(&b, msgs[i].content);
        if (!g3 || (strcmp(role, "system") && strcmp(role, "user"))) put(&b, chat->end_text);
        put(&b, end);
    }
    if (adapter > 0 && kind == SR_ADAPTER_LORA) *ctrl_at = 0;
    else if (adapter > 0 && target == n) *ctrl_at = (int64_t)b.n;   /* before the generation prompt */
    if (add_generation_prompt && !g3) {
        put(&b, chat->start_role);
        put(&b, "assistant");
        put(&b, chat->end_role);
    } else if (add_generation_prompt && n > 0) {    /* the template's loop.last */
        put(&b, "<|assistant|>\n");
    }
    put(&b, "");        /* an empty conversation still gets a string */
    if (b.oom) {
        sr_free(b.p);
        *ctrl_at = -1;
        return sr_fail(err, "chat: out of memory rendering %zu messages", n);
    }
    *text = b.p;
    *len = b.n;
    return 0;
}
