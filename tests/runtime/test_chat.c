/* The chat formats (runtime/chat.h) against what transformers renders:
 * Granite 3.0's chat_template (the real IBM tokenizer_config.json of
 * tests/data/tokenizer/granite-3) for the conversations of
 * tests/data/chat/granite-3.jsonl, rendered by transformers 5.8.1 (see
 * tests/data/README.md); which templates count as which form; and an
 * aLoRA control token's place in the Granite 3.0 form. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "runtime/alloc.h"
#include "runtime/chat.h"
#include "test_util.h"

static char *granite3_config(void)
{
    size_t n;
    char *text = test_read_file(test_data("tokenizer/granite-3/tokenizer_config.json"), &n);
    assert_non_null(text);
    return text;
}

static void test_granite3_as_transformers(void **state)
{
    (void)state;
    char *tc = granite3_config();
    sr_config cfg;
    memset(&cfg, 0, sizeof cfg);
    sr_chat chat;
    sr_error err;
    assert_int_equal(sr_chat_parse(tc, NULL, "granite-3", &cfg, &chat, &err), 0);
    assert_int_equal(chat.style, SR_CHAT_GRANITE_3_0);
    assert_false(chat.unknown_template);
    assert_non_null(strstr(chat.default_system, "A chat between a curious user"));

    size_t len;
    char *cases = test_read_file(test_data("chat/granite-3.jsonl"), &len);
    assert_non_null(cases);
    int n_cases = 0;
    for (char *line = strtok(cases, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *c = json_loads(line, 0, &je);
        assert_non_null(c);
        json_t *ms = json_object_get(c, "messages");
        sr_chat_msg msgs[8];
        size_t n = json_array_size(ms);
        assert_true(n <= 8);
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(ms, i);
            msgs[i] = (sr_chat_msg){json_string_value(json_object_get(m, "role")),
                                    json_string_value(json_object_get(m, "content"))};
        }
        char *text;
        size_t tl;
        int64_t at;
        const bool gen = json_is_true(json_object_get(c, "add_generation_prompt"));
        assert_int_equal(sr_chat_render(&chat, msgs, n, gen, 0, SR_ADAPTER_UNKNOWN, &text, &tl,
                                        &at, &err), 0);
        const char *want = json_string_value(json_object_get(c, "text"));
        if (strcmp(text, want))
            fail_msg("case %d: strata rendered\n%s\ntransformers\n%s", n_cases, text, want);
        assert_int_equal(tl, strlen(want));
        assert_int_equal(at, -1);
        sr_free(text);
        json_decref(c);
        n_cases++;
    }
    assert_int_equal(n_cases, 14);
    free(cases);
    sr_chat_free(&chat);
    free(tc);
}

/* An aLoRA adapter's control token goes before the generation prompt, or
 * before its invocation text in the last user message holding it; a LoRA
 * one at position 0 (before the default system turn). */
static void test_granite3_control_token(void **state)
{
    (void)state;
    char *tc = granite3_config();
    char *names[] = {"ans", "req"};
    sr_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.num_adapters = 2;
    cfg.adapter_names = names;
    sr_chat chat;
    sr_error err;
    const char *kinds = "{\"adapter_kinds\": [\"alora\", \"lora\"]}";
    assert_int_equal(sr_chat_parse(tc, kinds, "granite-3", &cfg, &chat, &err), 0);
    assert_int_equal(chat.style, SR_CHAT_GRANITE_3_0);
    sr_chat_msg msgs[] = {{"user", "Hi"}};
    char *text;
    size_t tl;
    int64_t at;
    assert_int_equal(sr_chat_render(&chat, msgs, 1, true, 1, SR_ADAPTER_UNKNOWN, &text, &tl, &at,
                                    &err), 0);
    assert_int_equal(at, (int64_t)(strstr(text, "Hi\n") - text) + 3);
    assert_string_equal(text + at, "<|assistant|>\n");
    sr_free(text);
    assert_int_equal(sr_chat_render(&chat, msgs, 1, true, 2, SR_ADAPTER_UNKNOWN, &text, &tl, &at,
                                    &err), 0);
    assert_int_equal(at, 0);
    sr_free(text);
    sr_chat_free(&chat);
    free(tc);
}

/* Which form a template is taken for. */
static void test_template_forms(void **state)
{
    (void)state;
    static const struct {
        const char *tc;
        sr_chat_style style;
        bool unknown;
    } cases[] = {
        /* Granite 4 / 3.1+: role markers */
        {"{\"chat_template\": \"{{ '<|start_of_role|>' + message['role'] + '<|end_of_role|>' + "
         "message['content'] }}\"}", SR_CHAT_ROLE_MARKERS, false},
        /* a composer's adapter map alone renders nothing: the default, quietly */
        {"{\"chat_template\": \"{%- set adapter_map = {'a': {'type': 'lora'}} %}\"}",
         SR_CHAT_ROLE_MARKERS, false},
        /* ChatML: rendered in another form, which strata does not run */
        {"{\"chat_template\": \"{% for message in messages %}{{'<|im_start|>' + message['role'] "
         "+ '\\\\n' + message['content'] + '<|im_end|>'}}{% endfor %}\"}",
         SR_CHAT_ROLE_MARKERS, true},
        {"{\"eos_token\": \"</s>\"}", SR_CHAT_ROLE_MARKERS, false},
    };
    sr_config cfg;
    memset(&cfg, 0, sizeof cfg);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sr_chat chat;
        sr_error err;
        assert_int_equal(sr_chat_parse(cases[i].tc, NULL, "t", &cfg, &chat, &err), 0);
        assert_int_equal(chat.style, cases[i].style);
        assert_int_equal(chat.unknown_template, cases[i].unknown);
        assert_null(chat.default_system);
        sr_chat_free(&chat);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_granite3_as_transformers),
        cmocka_unit_test(test_granite3_control_token),
        cmocka_unit_test(test_template_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
