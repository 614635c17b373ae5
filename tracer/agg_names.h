/* agg_names.h: the names the reader's replay (reader/replay.c, omap.c) takes
 * when it is compiled into the tracer for --aggregate (agg_replay.c). The
 * unit tests link the tracer's sources beside the reader itself, so each copy
 * needs names of its own. Include before reader/loader.h. */
#ifndef MT_TRACER_AGG_NAMES_H
#define MT_TRACER_AGG_NAMES_H

#define mt__idmap_get mt__agg_idmap_get
#define mt__idmap_put mt__agg_idmap_put
#define mt__idmap_free mt__agg_idmap_free
#define mt__replay_init mt__agg_replay_init
#define mt__replay_free mt__agg_replay_free
#define mt__replay_reserve_nodes mt__agg_replay_reserve_nodes
#define mt__replay_add_run mt__agg_replay_add_run
#define mt__replay_add_tick mt__agg_replay_add_tick
#define mt__replay_until mt__agg_replay_until
#define mt__replay_end_block mt__agg_replay_end_block
#define mt__load_error mt__agg_load_error
#define mt__load_warn mt__agg_load_warn
#define mt__omap_init mt__agg_omap_init
#define mt__omap_free mt__agg_omap_free
#define mt__omap_insert mt__agg_omap_insert
#define mt__omap_erase mt__agg_omap_erase
#define mt__omap_floor mt__agg_omap_floor
#define mt__omap_after mt__agg_omap_after

#endif
