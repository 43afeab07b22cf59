/*
 * A do-nothing libmilter milter: the floor of any milter's cost.
 *
 *     nullmilter SOCKET STEPS ACTIONS [STAGE:MACROS ...]
 *
 * It answers CONTINUE to every event (NOREPLY where the steps ask for no
 * reply) and adds nothing. It negotiates exactly the protocol steps,
 * actions and macro lists it is given, offered ones only, so that the MTA
 * sends it what it sends the milter it stands beside: bench/nullmilters.py
 * reads them from our milter's SMFIC_OPTNEG answer and passes them here.
 * STEPS and ACTIONS are numbers (0x... for hex); each STAGE:MACROS is an
 * SMFIM_* stage and its space-separated macro names (smfi_setsymlist).
 *
 * Built by the benchmark into its work directory:
 *     gcc -O2 -Wall -o nullmilter nullmilter.c -lmilter -lpthread
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libmilter/mfapi.h>

#define MAX_LISTS 7 /* SMFIM_CONNECT .. SMFIM_EOH */

static unsigned long steps;   /* set once in main(), read-only after */
static unsigned long actions;
static int list_stages[MAX_LISTS];
static char *list_macros[MAX_LISTS];
static int lists;

/* CONTINUE, or NOREPLY for a step negotiated as "no reply" (SMFIP_NR_*). */
static sfsistat answer(unsigned long no_reply)
{
	return (steps & no_reply) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
			     unsigned long f2, unsigned long f3,
			     unsigned long *pf0, unsigned long *pf1,
			     unsigned long *pf2, unsigned long *pf3)
{
	int i;

	(void)f2;
	(void)f3;
	*pf0 = actions & f0;
	*pf1 = steps & f1;
	*pf2 = 0;
	*pf3 = 0;
	for (i = 0; i < lists; i++)
		smfi_setsymlist(ctx, list_stages[i], list_macros[i]);
	return SMFIS_CONTINUE;
}

static sfsistat on_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
	(void)ctx; (void)host; (void)addr;
	return answer(SMFIP_NR_CONN);
}

static sfsistat on_helo(SMFICTX *ctx, char *helo)
{
	(void)ctx; (void)helo;
	return answer(SMFIP_NR_HELO);
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
	(void)ctx; (void)argv;
	return answer(SMFIP_NR_MAIL);
}

static sfsistat on_envrcpt(SMFICTX *ctx, char **argv)
{
	(void)ctx; (void)argv;
	return answer(SMFIP_NR_RCPT);
}

static sfsistat on_data(SMFICTX *ctx)
{
	(void)ctx;
	return answer(SMFIP_NR_DATA);
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
	(void)ctx; (void)name; (void)value;
	return answer(SMFIP_NR_HDR);
}

static sfsistat on_eoh(SMFICTX *ctx)
{
	(void)ctx;
	return answer(SMFIP_NR_EOH);
}

static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t size)
{
	(void)ctx; (void)chunk; (void)size;
	return answer(SMFIP_NR_BODY);
}

static sfsistat on_unknown(SMFICTX *ctx, const char *command)
{
	(void)ctx; (void)command;
	return answer(SMFIP_NR_UNKN);
}

static sfsistat on_final(SMFICTX *ctx)
{
	(void)ctx;
	return SMFIS_CONTINUE; /* end of message, abort, close */
}

static struct smfiDesc null_milter = {
	"nullmilter",
	SMFI_VERSION,
	0, /* actions: negotiated in on_negotiate */
	on_connect,
	on_helo,
	on_envfrom,
	on_envrcpt,
	on_header,
	on_eoh,
	on_body,
	on_final, /* eom */
	on_final, /* abort */
	on_final, /* close */
	on_unknown,
	on_data,
	on_negotiate,
};

static int parse_list(const char *spec)
{
	char *end;
	long stage = strtol(spec, &end, 10);

	if (*end != ':' || stage < 0 || stage >= MAX_LISTS || lists >= MAX_LISTS)
		return -1;
	list_stages[lists] = (int)stage;
	list_macros[lists] = end + 1;
	lists++;
	return 0;
}

int main(int argc, char **argv)
{
	int i;

	if (argc < 4) {
		fprintf(stderr, "usage: %s SOCKET STEPS ACTIONS [STAGE:MACROS ...]\n",
			argv[0]);
		return 64;
	}
	steps = strtoul(argv[2], NULL, 0);
	actions = strtoul(argv[3], NULL, 0);
	for (i = 4; i < argc; i++) {
		if (parse_list(argv[i]) != 0) {
			fprintf(stderr, "bad macro list: %s\n", argv[i]);
			return 64;
		}
	}
	umask(0); /* the MTA (Postfix's smtpd) connects as another user */
	if (smfi_setconn(argv[1]) == MI_FAILURE ||
	    smfi_register(null_milter) == MI_FAILURE ||
	    smfi_opensocket(1) == MI_FAILURE) {
		fprintf(stderr, "cannot listen on %s\n", argv[1]);
		return 69;
	}
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
