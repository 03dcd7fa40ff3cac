// Option-table parser tests (cli.h): every kind of option stores what it should, defaults stay
// when an option is absent, positional arguments are counted, and every error path gives its one
// message and its result: --help, an unknown option, a missing value, a value out of range or
// not a number, an option given twice, a missing required option or argument, one argument too
// many. cli_parse's printing (the exit status, the line on stderr, usage after usage errors only)
// and the subcommand table's dispatch and usage are checked too.
#define _GNU_SOURCE
#include "cli.h"
#include "testlib.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

static const char *USAGE = "usage: prog [options] FILE...\n";

// Every kind of option, with its destinations, as a command would declare them.
typedef struct {
    const char *out, *name;
    int64_t seed;
    double rate, temperature;
    int json;
    CliList sets, files;
    int mix;   // set by the custom parser
} Args;

static int parse_even(const char *v, void *ctx, char *err, size_t errlen) {
    int n = atoi(v);
    if (n % 2) {
        snprintf(err, errlen, "--even: '%s' is odd", v);
        return -1;
    }
    *(int *)ctx = n;
    return 0;
}

// Parses argv (NULL-terminated) into a with the test table; the result, message in err.
static CliResult parse(Args *a, char *err, size_t errlen, const char **argv_in) {
    memset(a, 0, sizeof *a);
    a->seed = 1234;
    a->rate = 0.5;
    a->temperature = 1;
    a->name = "default";
    CliOption opts[] = {
        CLI_STRING("--out", &a->out, .required = 1),
        CLI_STRING("--name", &a->name),
        CLI_INT("--seed", &a->seed, 0, 100),
        CLI_DOUBLE("--rate", &a->rate, 0, 1),
        CLI_DOUBLE("--temperature", &a->temperature, 0, 10),
        CLI_CONST("--greedy", &a->temperature, 0),
        CLI_FLAG("--json", &a->json),
        CLI_LIST("--set", &a->sets),
        CLI_CUSTOM("--even", parse_even, &a->mix),
        {0}};
    CliCommand cmd = {.prog = "prog", .usage = USAGE, .opts = opts, .arg_name = "FILE",
                      .arg_list = &a->files, .args_min = 1, .args_max = 3};
    int argc = 0;
    while (argv_in[argc]) argc++;
    err[0] = 0;
    return cli_parse_args(&cmd, argc, (char **)argv_in, err, errlen);
}

static void args_free(Args *a) {
    cli_list_free(&a->sets);
    cli_list_free(&a->files);
}

#define ARGV(...) ((const char *[]){__VA_ARGS__, NULL})

// The parse of argv fails with result want and a message containing msg.
static void expect_error(const char **argv, CliResult want, const char *msg) {
    Args a;
    char err[256];
    CliResult r = parse(&a, err, sizeof err, argv);
    CHECK_MSG(r == want, "%s ...: result %d, want %d (message '%s')", argv[0], (int)r, (int)want,
              err);
    CHECK_MSG(strstr(err, msg) != NULL, "message '%s' does not hold '%s'", err, msg);
    CHECK_MSG(!strchr(err, '\n'), "message '%s' is more than one line", err);
    args_free(&a);
}

static void test_every_kind(void) {
    Args a;
    char err[256];
    CliResult r = parse(&a, err, sizeof err,
                        ARGV("--out", "o", "f1", "--seed", "7", "--rate", "0.25", "--json", "--set",
                             "a=1", "f2", "--set", "b=2", "--even", "4", "-", "--name", "-h"));
    CHECK_MSG(r == CLI_PARSED, "result %d: %s", (int)r, err);
    CHECK(a.out && !strcmp(a.out, "o"));
    CHECK(a.seed == 7);
    CHECK(a.rate == 0.25);
    CHECK(a.json == 1);
    CHECK(a.mix == 4);
    CHECK(!strcmp(a.name, "-h"));   // an option's value is a value, even "-h"
    CHECK(a.sets.n == 2 && !strcmp(a.sets.items[0], "a=1") && !strcmp(a.sets.items[1], "b=2"));
    CHECK(a.files.n == 3 && !strcmp(a.files.items[0], "f1") && !strcmp(a.files.items[2], "-"));
    CHECK(a.files.items[3] == NULL);   // NULL-terminated
    args_free(&a);
}

static void test_defaults(void) {
    Args a;
    char err[256];
    CHECK(parse(&a, err, sizeof err, ARGV("f", "--out", "o")) == CLI_PARSED);
    CHECK(a.seed == 1234 && a.rate == 0.5 && a.temperature == 1 && !a.json);
    CHECK(!strcmp(a.name, "default"));
    CHECK(a.sets.n == 0 && a.files.n == 1);
    args_free(&a);
}

static void test_const_in_order(void) {   // --greedy and --temperature: the later one wins
    Args a;
    char err[256];
    CHECK(parse(&a, err, sizeof err, ARGV("f", "--out", "o", "--temperature", "2", "--greedy")) ==
          CLI_PARSED);
    CHECK(a.temperature == 0);
    args_free(&a);
    CHECK(parse(&a, err, sizeof err, ARGV("f", "--out", "o", "--greedy", "--temperature", "2")) ==
          CLI_PARSED);
    CHECK(a.temperature == 2);
    args_free(&a);
}

static void test_bounds_inclusive(void) {
    Args a;
    char err[256];
    CHECK(parse(&a, err, sizeof err, ARGV("f", "--out", "o", "--seed", "100", "--rate", "1")) ==
          CLI_PARSED);
    CHECK(a.seed == 100 && a.rate == 1);
    args_free(&a);
    CHECK(parse(&a, err, sizeof err, ARGV("f", "--out", "o", "--seed", "0", "--rate", "0")) ==
          CLI_PARSED);
    CHECK(a.seed == 0 && a.rate == 0);
    args_free(&a);
}

static void test_errors(void) {
    expect_error(ARGV("f", "--out", "o", "--help"), CLI_HELP, "");
    expect_error(ARGV("-h"), CLI_HELP, "");   // help before the missing required option
    expect_error(ARGV("f", "--out", "o", "--frob"), CLI_USAGE_ERROR, "unknown option '--frob'");
    expect_error(ARGV("f", "--out", "o", "--seed"), CLI_USAGE_ERROR, "--seed needs a value");
    expect_error(ARGV("f", "--out"), CLI_USAGE_ERROR, "--out needs a value");
    // bad values of one option after the required ones: "f --out o OPTION VALUE"
    static const struct { const char *option, *value, *msg; } bad_values[] = {
        {"--seed", "101", "--seed: '101' is not an integer in 0..100"},
        {"--seed", "-1", "--seed: '-1' is not an integer"},
        {"--seed", "7x", "--seed: '7x' is not an integer"},
        {"--seed", "", "--seed needs an integer"},
        {"--rate", "1.5", "--rate: '1.5' is not a number in 0..1"},
        {"--rate", "abc", "--rate: 'abc' is not a number"},
        {"--rate", "nan", "--rate: 'nan' is not a number"},
        {"--even", "3", "--even: '3' is odd"},
    };
    for (size_t i = 0; i < sizeof bad_values / sizeof bad_values[0]; i++)
        expect_error(ARGV("f", "--out", "o", bad_values[i].option, bad_values[i].value),
                     CLI_VALUE_ERROR, bad_values[i].msg);
    expect_error(ARGV("f", "--out", "o", "--seed", "1", "--seed", "2"), CLI_USAGE_ERROR,
                 "--seed is given twice");
    expect_error(ARGV("f", "--out", "o", "--json", "--json"), CLI_USAGE_ERROR,
                 "--json is given twice");
    expect_error(ARGV("f"), CLI_USAGE_ERROR, "--out is required");
    expect_error(ARGV("--out", "o"), CLI_USAGE_ERROR, "FILE is required");
    expect_error(ARGV("a", "b", "c", "d", "--out", "o"), CLI_USAGE_ERROR,
                 "unexpected argument 'd'");
}

// The first error wins: a bad value before an unknown option reports the value.
static void test_first_error(void) {
    expect_error(ARGV("f", "--out", "o", "--seed", "x", "--frob"), CLI_VALUE_ERROR, "--seed: 'x'");
    expect_error(ARGV("f", "--frob", "--seed", "x"), CLI_USAGE_ERROR, "unknown option '--frob'");
}

// One positional argument (arg): a second is an error; none of either kind is fine.
static void test_single_argument(void) {
    const char *ckpt = NULL;
    int64_t n = 3;
    CliOption opts[] = {CLI_INT("--n", &n, 1, 9), {0}};
    CliCommand cmd = {.prog = "p", .usage = USAGE, .opts = opts, .arg_name = "CKPT", .arg = &ckpt};
    char err[256];
    CHECK(cli_parse_args(&cmd, 3, (char *[]){"c", "--n", "4"}, err, sizeof err) == CLI_PARSED);
    CHECK(ckpt && !strcmp(ckpt, "c") && n == 4);
    CHECK(cli_parse_args(&cmd, 2, (char *[]){"c", "d"}, err, sizeof err) == CLI_USAGE_ERROR);
    CHECK(strstr(err, "unexpected argument 'd'") != NULL);
    ckpt = NULL;
    CHECK(cli_parse_args(&cmd, 0, (char *[]){NULL}, err, sizeof err) == CLI_PARSED);
    CHECK(ckpt == NULL);
    CliCommand none = {.prog = "p", .usage = USAGE, .opts = opts};   // no positional arguments
    CHECK(cli_parse_args(&none, 1, (char *[]){"x"}, err, sizeof err) == CLI_USAGE_ERROR);
    CHECK(strstr(err, "unexpected argument 'x'") != NULL);
}

// Runs cli_parse with stdout and stderr caught; returns what cli_parse returned.
static int parse_printed(int argc, char **argv, int value_status, int *status, char *out,
                         char *errtext, size_t n) {
    int64_t seed = 0;
    CliOption opts[] = {CLI_INT("--seed", &seed, 0, 9, .required = 1), {0}};
    CliCommand cmd = {.prog = "prog", .usage = USAGE, .opts = opts, .value_status = value_status};
    fflush(stdout);
    fflush(stderr);
    FILE *fo = tmpfile(), *fe = tmpfile();
    int so = dup(1), se = dup(2);
    dup2(fileno(fo), 1);
    dup2(fileno(fe), 2);
    int r = cli_parse(&cmd, argc, argv, status);
    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    rewind(fo);
    rewind(fe);
    size_t ko = fread(out, 1, n - 1, fo), ke = fread(errtext, 1, n - 1, fe);
    out[ko] = 0;
    errtext[ke] = 0;
    fclose(fo);
    fclose(fe);
    return r;
}

static void test_parse_prints(void) {
    char out[1024], e[1024];
    int status = -1;
    CHECK(parse_printed(1, (char *[]){"--help"}, 0, &status, out, e, sizeof out) == 1);
    CHECK(status == 0 && !strcmp(out, USAGE) && !*e);
    CHECK(parse_printed(1, (char *[]){"--frob"}, 0, &status, out, e, sizeof out) == 1);
    CHECK(status == 2 && !*out);
    CHECK_MSG(!strcmp(e, "prog: unknown option '--frob'\nusage: prog [options] FILE...\n"),
              "got '%s'", e);
    CHECK(parse_printed(2, (char *[]){"--seed", "10"}, 0, &status, out, e, sizeof out) == 1);
    CHECK(status == 2);   // a bad value: exit 2 by default, no usage
    CHECK_MSG(!strcmp(e, "prog: --seed: '10' is not an integer in 0..9\n"), "got '%s'", e);
    CHECK(parse_printed(2, (char *[]){"--seed", "10"}, 1, &status, out, e, sizeof out) == 1);
    CHECK(status == 1);   // value_status: the reward program's bad values exit 1
    CHECK(parse_printed(0, (char *[]){NULL}, 1, &status, out, e, sizeof out) == 1);
    CHECK(status == 2);   // a missing required option is a usage error whatever value_status
    CHECK_MSG(!strcmp(e, "prog: --seed is required\nusage: prog [options] FILE...\n"), "got '%s'",
              e);
    status = -1;
    CHECK(parse_printed(2, (char *[]){"--seed", "3"}, 0, &status, out, e, sizeof out) == 0);
    CHECK(status == -1 && !*out && !*e);
}

static int sub_a(int argc, char **argv) { return argc == 1 && !strcmp(argv[0], "x") ? 42 : 43; }
static int sub_b(int argc, char **argv) { return 7; }

static void test_program(void) {
    const CliSubcommand cmds[] = {
        {"alpha", sub_a, "X   the first"}, {"b", sub_b, "the second"}, {0}};
    CliProgram p = {
        .prog = "tool", .head = "usage: tool COMMAND\n\n", .cmds = cmds, .name_width = 6};
    CHECK(cli_program_run(&p, 3, (char *[]){"tool", "alpha", "x"}) == 42);
    CHECK(cli_program_run(&p, 2, (char *[]){"tool", "b"}) == 7);
    FILE *f = tmpfile();
    cli_program_usage(&p, f);
    rewind(f);
    char buf[256];
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    buf[k] = 0;
    fclose(f);
    CHECK_MSG(!strcmp(buf, "usage: tool COMMAND\n\n  alpha  X   the first\n  b      the second\n"),
              "got '%s'", buf);
    fflush(stderr);
    int se = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    int unknown = cli_program_run(&p, 2, (char *[]){"tool", "gamma"});
    int none = cli_program_run(&p, 1, (char *[]){"tool"});
    dup2(se, 2);
    close(se);
    close(devnull);
    CHECK(unknown == 2 && none == 2);
}

int main(void) {
    test_case("every kind of option stores its value", test_every_kind);
    test_case("absent options keep their defaults", test_defaults);
    test_case("a constant and its option: the later wins", test_const_in_order);
    test_case("range bounds are inclusive", test_bounds_inclusive);
    test_case("every error path, one line naming the option", test_errors);
    test_case("the first error is the one reported", test_first_error);
    test_case("one positional argument", test_single_argument);
    test_case("cli_parse prints and sets the exit status", test_parse_prints);
    test_case("subcommand table: dispatch and usage", test_program);
    return test_summary();
}
