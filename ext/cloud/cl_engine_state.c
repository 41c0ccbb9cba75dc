/*
 * cl_engine_state: a cloud's state document (spec, epoch, leader, placement, set-up
 * incarnations) as a run persists it, and the intent in it: the cloud's last ordered state,
 * running or stopped, with the epoch of the leader that ordered it.  The intent is read,
 * compared and written under the engine's state lock, so an order that another leader gave this
 * host meanwhile (cl_engine_intent) is never overwritten by an older one.
 */
#include "cl_engine_int.h"

#include <inttypes.h>
#include <string.h>

#include "cl_log.h"
#include "cl_state.h"

unsigned long cl_engine_state_epoch(json_object *state)
{
    json_object *v;

    if (state && json_object_object_get_ex(state, "epoch", &v))
        return (unsigned long)json_object_get_int64(v);
    return 0;
}

/* The intent recorded in a state document (none: running, epoch 0). */
void cl_engine_intent_read(json_object *state, cl_intent_t *o)
{
    json_object *in, *v;

    memset(o, 0, sizeof(*o));
    if (!state)
        return;
    o->known = 1;
    if (!json_object_object_get_ex(state, "intent", &in))
        return;
    if (json_object_object_get_ex(in, "ensure", &v) && json_object_is_type(v, json_type_string))
        o->stopped = strcmp(json_object_get_string(v), "stopped") == 0;
    if (json_object_object_get_ex(in, "epoch", &v))
        o->epoch = (uint64_t)json_object_get_int64(v);
}

/* Does a supersede b?  The newer epoch; in one epoch, stopped (the cautious answer). */
int cl_engine_intent_newer(const cl_intent_t *a, const cl_intent_t *b)
{
    return a->known && (!b->known || a->epoch > b->epoch ||
                        (a->epoch == b->epoch && a->stopped && !b->stopped));
}

static void intent_put(json_object *doc, const cl_intent_t *in)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "ensure",
                           json_object_new_string(in->stopped ? "stopped" : "running"));
    json_object_object_add(o, "epoch", json_object_new_int64((int64_t)in->epoch));
    json_object_object_add(doc, "intent", o);
}

/*
 * Save doc as name's state, keeping the newer of its intent (*in, updated) and the one on
 * disk: another leader may have told this host meanwhile (cl_engine_intent).
 */
int cl_engine_state_save(cl_engine_t *e, const char *name, json_object *doc, cl_intent_t *in,
                         cl_err_t *err)
{
    json_object *cur = NULL;
    cl_intent_t disk;
    cl_err_t e2;
    int rc;

    pthread_mutex_lock(&e->state_lock);
    cl_err_clear(&e2);
    if (cl_state_load(e->state_dir, name, &cur, &e2) > 0) {
        cl_engine_intent_read(cur, &disk);
        if (cl_engine_intent_newer(&disk, in))
            *in = disk;
    }
    json_object_put(cur);
    intent_put(doc, in);
    rc = cl_state_save(e->state_dir, name, doc, err);
    pthread_mutex_unlock(&e->state_lock);
    return rc;
}

/* The state document to persist: spec, epoch, leader, placement, intent. */
json_object *cl_engine_state_doc(const cl_run_t *r, const cl_slot_plan_t *p)
{
    int li;
    json_object *o = json_object_new_object(), *pl = json_object_new_object();
    size_t i;

    json_object_object_add(o, "spec", json_object_get(r->spec->json));
    json_object_object_add(o, "epoch", json_object_new_int64((int64_t)r->epoch));
    li = cl_engine_leader_index(r->e, r->spec);
    json_object_object_add(o, "leader", li >= 0 ? json_object_new_string(r->spec->pool[li]) : NULL);
    for (i = 0; p && i < r->spec->nslots; i++) {
        const char *slot = r->spec->slots[p[i].slot].name;
        json_object *was = NULL;
        /* a slot held for later keeps the host it was on (its fencing is still awaited) */
        if (p[i].dom < 0 && p[i].act == CL_ACT_NONE) {
            if (r->placed && json_object_object_get_ex(r->placed, slot, &was) && was)
                json_object_object_add(pl, slot, json_object_get(was));
        } else
            json_object_object_add(pl, slot, json_object_new_string(r->hosts[p[i].host].name));
    }
    json_object_object_add(o, "placement", pl);
    intent_put(o, &r->intent);
    if (r->configured && r->spec) {
        /* the slots' set-up incarnations, of the slots the spec still has */
        json_object *cf = json_object_new_object(), *v;
        for (i = 0; i < r->spec->nslots; i++)
            if (json_object_object_get_ex(r->configured, r->spec->slots[i].name, &v))
                json_object_object_add(cf, r->spec->slots[i].name, json_object_get(v));
        json_object_object_add(o, "configured", cf);
    }
    return o;
}

int cl_engine_intent(cl_engine_t *e, const char *name, const char *set, uint64_t epoch,
                     const cl_spec_t *spec, cl_intent_t *out, cl_err_t *err)
{
    json_object *state = NULL;
    cl_intent_t cur;
    int rc = -1, ls;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&e->state_lock);
    ls = cl_state_load(e->state_dir, name, &state, err);
    if (ls < 0)
        goto cleanup;
    rc = 0;
    if (ls == 0)
        goto cleanup; /* not known (never joined, or forgotten): out->known 0 */
    cl_engine_intent_read(state, &cur);
    if (set && strcmp(set, "forget") == 0) {
        if (cur.stopped) {
            if (cl_state_remove(e->state_dir, name, err) < 0) {
                rc = -1;
                goto cleanup;
            }
            cl_log(CL_LOG_INFO, "-forget", "cloud=%s epoch=%" PRIu64 " stopped by its leader", name,
                   epoch);
            rc = 1;
            goto cleanup;
        }
    } else if (set && epoch >= cur.epoch) {
        /* "running" or "stopped", ordered by a leader not older than the last one heard */
        cl_intent_t in = {1, strcmp(set, "stopped") == 0, epoch};
        json_object *old = NULL;
        int new_spec = spec && !in.stopped && strcmp(spec->name, name) == 0 &&
                       (!json_object_object_get_ex(state, "spec", &old) ||
                        !json_object_equal(old, spec->json));
        if (in.stopped != cur.stopped || in.epoch != cur.epoch || new_spec) {
            if (new_spec)
                json_object_object_add(state, "spec", json_object_get(spec->json));
            intent_put(state, &in);
            if (cl_state_save(e->state_dir, name, state, err) < 0) {
                rc = -1;
                goto cleanup;
            }
            if (in.stopped != cur.stopped)
                cl_log(CL_LOG_INFO, in.stopped ? "+stop-order" : "+run-order",
                       "cloud=%s epoch=%" PRIu64 " recorded", name, epoch);
        }
        cur = in;
    }
    *out = cur;

cleanup:
    pthread_mutex_unlock(&e->state_lock);
    json_object_put(state);
    return rc;
}
