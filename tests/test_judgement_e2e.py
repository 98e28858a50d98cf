"""Issue 3's end-to-end case through the real pipeline: two outlets carry the same article, three
outlets cover one event, and unrelated items on the same tag stay separate stories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.feedserver import Entry
from tests.test_pipeline_integration import events, make_config, open_app, server  # noqa: F401 (fixture)

QUAKE_WIRE = (
    "A magnitude 6.4 earthquake struck off the coast of Sulawesi early on Monday, the national geophysics "
    "agency said, shaking buildings in the provincial capital and sending residents running into the streets. "
    "The agency said there was no tsunami threat. Local officials reported damage to at least two dozen houses "
    "and a market hall, and said three people had been taken to hospital with injuries from falling debris. "
    "Aftershocks continued through the morning."
)
QUAKE_SYNDICATED = QUAKE_WIRE + " This article originally appeared in Island Wire."
QUAKE_OTHER_1 = (
    "Rescue teams in Sulawesi searched damaged homes on Monday after a strong earthquake rattled the island before "
    "dawn. Hospital staff moved patients outside as a precaution. A resident of the port district said the shaking "
    "lasted nearly half a minute and knocked tiles from roofs along her street. The governor ordered schools closed "
    "for two days while engineers inspect them."
)
QUAKE_OTHER_2 = (
    "Sulawesi earthquake: engineers begin checking schools and bridges. Officials on the Indonesian island said on "
    "Monday that inspections would take several days after the magnitude 6.4 quake, and that families whose homes "
    "were damaged would be housed in a sports hall. Power was restored to most districts by the afternoon."
)
VOLCANO = (
    "Authorities in Sulawesi raised the alert level for Mount Soputan on Monday after a series of small eruptions "
    "sent ash two kilometres into the sky. Villages within four kilometres of the crater were told to prepare for "
    "evacuation, and airlines were warned about ash near the regional airport."
)


# Other news the bot has seen (a real stream has thousands of items): story similarity weighs words by
# how rare they are in the stream, so the test world should not consist of one topic only.
BACKGROUND = [
    ("Central bank holds rates steady as inflation eases", "The central bank kept its main rate unchanged on Monday."),
    ("Monday strikes disrupt rail services across the north", "Rail workers walked out on Monday over pay."),
    ("Tech giant unveils new phone with longer battery life", "The company showed its new phone at an event."),
    ("Floods force thousands from homes in river valley", "Heavy rain flooded villages along the river."),
    ("Election commission sets date for regional vote", "The vote will be held in the spring, officials said."),
    ("Football: late goal sends champions top of the league", "A stoppage-time winner settled the match."),
    ("Oil prices climb after pipeline outage", "Crude rose two percent after a pipeline shut down."),
    ("Wildfire near capital contained, officials say", "Firefighters contained the blaze on Monday evening."),
    ("Parliament passes budget after all-night session", "Lawmakers approved the budget early on Monday."),
    ("Island ferry operator adds winter sailings", "Extra sailings will run to the outer islands."),
    ("Health ministry warns of dengue rise after rains", "Cases rose in several provinces after heavy rain."),
    ("Airline orders forty new jets in record deal", "The order is the airline's largest ever."),
    ("Drought cuts coffee harvest in the highlands", "Growers expect a smaller crop this year."),
    ("Earthquake drill held in schools nationwide", "Pupils practised evacuating classrooms."),
    ("Museum returns looted statues to temple", "The statues were handed back at a ceremony."),
    ("Typhoon weakens as it nears the northern coast", "Forecasters said winds had dropped overnight."),
]


def ago(minutes: float) -> datetime:
    return datetime.now(UTC) - timedelta(minutes=minutes)


async def test_copies_update_coverage_threads_and_other_stories_stay_apart(tmp_path, server):  # noqa: F811
    names = {"w": "Island Wire", "y": "Daily Digest", "p": "Pacific Post", "t": "Tropic Times", "b": "Bulletin"}
    feeds = {k: server.feed(k, v) for k, v in names.items()}
    feeds["b"].entries.extend(
        Entry(f"bg{i}", t, body, published=ago(120 + i)) for i, (t, body) in enumerate(BACKGROUND)
    )
    app, _ = await open_app(make_config(tmp_path, server, list(names), [("console:#asia", "Sulawesi")]))
    try:
        await app.run_once()  # baselines
        feeds["w"].entries.append(Entry("w1", "Magnitude 6.4 earthquake strikes off Sulawesi, no tsunami threat",
                                        QUAKE_WIRE, published=ago(50)))
        await app.run_once()
        feeds["y"].entries.append(Entry("y1", "Strong earthquake hits off Sulawesi; no tsunami threat, agency says",
                                        QUAKE_SYNDICATED, published=ago(40)))
        feeds["p"].entries.append(Entry("p1", "Sulawesi quake: rescuers search damaged homes, schools closed",
                                        QUAKE_OTHER_1, published=ago(30)))
        await app.run_once()
        feeds["t"].entries.append(Entry("t1", "Sulawesi earthquake: engineers begin checking schools and bridges",
                                        QUAKE_OTHER_2, published=ago(20)))
        feeds["p"].entries.append(Entry("p2", "Sulawesi volcano alert raised after ash eruptions", VOLCANO,
                                        published=ago(10)))
        await app.run_once()

        evs = events(tmp_path)
        alerts = [e for e in evs if e["type"] == "alert"]
        replies = [e for e in evs if e["type"] == "reply"]
        updates = [e for e in evs if e["type"] == "update"]
        quake_root = next(e for e in alerts if e["source"] == "Island Wire")
        # the syndicated copy is never posted: it edits the root instead
        assert not any(e["source"] == "Daily Digest" and e["type"] != "update" for e in evs)
        assert [u["message_id"] for u in updates] == [quake_root["message_id"]]
        assert updates[0]["also_reported_by"] == ["Daily Digest"]
        # the two other outlets' own reports are replies in the quake thread
        assert sorted(r["source"] for r in replies) == ["Pacific Post", "Tropic Times"]
        assert all(r["thread_id"] == quake_root["message_id"] for r in replies)
        assert all(r["story_id"] == quake_root["story_id"] for r in replies)
        # the volcano is another story on the same tag: its own alert
        volcano = [e for e in alerts if "volcano" in e["title"]]
        assert len(volcano) == 1 and volcano[0]["story_id"] != quake_root["story_id"]
        assert len(alerts) == 2

        why = await app.core.commands.latest("Sulawesi", 5)
        assert len(why) == 2, "latest shows one entry per story"
        quake = next(s for s in why if s.story_id == quake_root["story_id"])
        assert set(quake.sources) == {"Island Wire", "Daily Digest", "Pacific Post", "Tropic Times"}
    finally:
        await app.close()


async def test_guid_churn_and_resurfacing_items_do_not_alert_again(tmp_path, server):  # noqa: F811
    feed = server.feed("w", "Island Wire")
    app, _ = await open_app(make_config(tmp_path, server, ["w"], [("console:#asia", "Sulawesi")]))
    try:
        await app.run_once()
        link = server.url("articles/quake?utm_source=rss")
        feed.entries.append(Entry("guid-1", "Magnitude 6.4 earthquake strikes off Sulawesi", QUAKE_WIRE,
                                  link=link, published=ago(30)))
        await app.run_once()
        assert len(events(tmp_path)) == 1
        # the CMS re-issues the same article under a new guid and date, and with another tracking tag
        feed.entries[0] = Entry("guid-2", "Magnitude 6.4 earthquake strikes off Sulawesi", QUAKE_WIRE,
                                link=server.url("articles/quake?utm_source=twitter#comments"), published=ago(1))
        await app.run_once()
        # and once more under a new URL with a lightly edited text
        feed.entries.append(Entry("guid-3", "Magnitude 6.4 quake strikes off Sulawesi", QUAKE_WIRE.replace(
            "Aftershocks continued through the morning.", "Aftershocks continued into the afternoon."),
            link=server.url("articles/quake-updated"), published=ago(0.5)))
        await app.run_once()
        assert len(events(tmp_path)) == 1, "re-issued copies from the same outlet post nothing"
        from bot.models import Command, Destination

        reply = await app.core.commands.handle(Command("why", server.url("articles/quake-updated"),
                                                       Destination.parse("console:#asia")))
        assert any("duplicate" in line for line in reply.lines)
    finally:
        await app.close()


async def test_when_the_credited_original_arrives_the_alert_shows_it(tmp_path, server):  # noqa: F811
    """A reprint that names its origin is posted first; when the origin's own article arrives, the alert
    is edited to show the original and list the reprint as 'also reported by'."""
    wire, digest = server.feed("w", "Island Wire"), server.feed("y", "Daily Digest")
    app, _ = await open_app(make_config(tmp_path, server, ["w", "y"], [("console:#asia", "Sulawesi")]))
    try:
        await app.run_once()
        digest.entries.append(Entry("y1", "Strong earthquake hits off Sulawesi, agency says", QUAKE_SYNDICATED,
                                    published=ago(20)))
        await app.run_once()
        wire.entries.append(Entry("w1", "Magnitude 6.4 earthquake strikes off Sulawesi, no tsunami threat",
                                  QUAKE_WIRE, published=ago(25)))
        await app.run_once()
        alert, update = events(tmp_path)
        assert alert["type"] == "alert" and alert["source"] == "Daily Digest"
        assert update["type"] == "update" and update["message_id"] == alert["message_id"]
        assert update["source"] == "Island Wire" and update["url"] == server.url("articles/w1")
        assert update["title"].startswith("Magnitude 6.4 earthquake")
        assert update["also_reported_by"] == ["Daily Digest"]
    finally:
        await app.close()


async def test_after_a_restart_copies_still_point_at_the_original(tmp_path, server):  # noqa: F811
    """The near-duplicate memory survives a restart as it was: a later reprint is linked to the
    original article (whose alert is updated), never to an earlier reprint."""
    wire, digest, third = server.feed("w", "Island Wire"), server.feed("y", "Daily Digest"), server.feed("t", "Third")
    cfg = make_config(tmp_path, server, ["w", "y", "t"], [("console:#asia", "Sulawesi")])
    app, _ = await open_app(cfg)
    try:
        await app.run_once()
        wire.entries.append(Entry("w1", "Magnitude 6.4 earthquake strikes off Sulawesi", QUAKE_WIRE, published=ago(30)))
        await app.run_once()
        digest.entries.append(Entry("y1", "Earthquake strikes off Sulawesi", QUAKE_WIRE, published=ago(20)))
        await app.run_once()
    finally:
        await app.close()
    app, _ = await open_app(cfg)
    try:
        third.entries.append(Entry("t1", "Sulawesi hit by magnitude 6.4 quake", QUAKE_WIRE, published=ago(10)))
        await app.run_once()
        updates = [e for e in events(tmp_path) if e["type"] == "update"]
        assert [u["also_reported_by"] for u in updates] == [["Daily Digest"], ["Daily Digest", "Third"]]
        assert {u["source"] for u in updates} == {"Island Wire"}
    finally:
        await app.close()
