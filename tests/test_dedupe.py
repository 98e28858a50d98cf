"""Specification of bot.dedupe: which texts are copies of one another and which are not.

The articles below are invented news text written for these tests.
"""

from __future__ import annotations

import cProfile
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pytest
from datasketch import MinHash

from bot import dedupe
from bot.dedupe import (
    DuplicateMatch,
    Fingerprint,
    NearDuplicateIndex,
    fingerprint,
    fingerprint_from_bytes,
    fingerprint_to_bytes,
)


class Article(NamedTuple):
    title: str
    text: str


# --------------------------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------------------------

HK_HOUSING = Article(
    "Hong Kong to build 30,000 'light public housing' flats on idle sites by 2027",
    """Hong Kong will build about 30,000 prefabricated flats on idle government and private land over \
the next five years, the housing chief announced on Wednesday, as the city tries to shorten waiting \
times for public rental homes that now stretch to almost six years.

Secretary for Housing Grace Lam Wai-ling said the first batch of 2,100 units in Tuen Mun and Yuen Long \
would be ready for tenants by the end of next year, with rents set at no more than 10 per cent of the \
market rate for a comparable flat in the same district.

"We cannot ask families living in subdivided units to keep waiting while permanent estates are being \
built," Lam told a press briefing. "These homes are a bridge, not a destination."

The programme is expected to cost HK$26.3 billion, higher than an earlier estimate of HK$18 billion, \
mainly because of the cost of site formation and of connecting the flats to water, drainage and power \
networks. Officials said the modular units would be manufactured across the border and assembled on \
site in under two months.

Eligible applicants must have waited at least three years for a public flat. Priority will go to \
families with children and to elderly residents living in cramped conditions, the bureau said.

Lawmakers broadly welcomed the plan but questioned whether some sites, several of them next to \
highways or industrial areas, were suitable for families. Legislator Chan Hoi-yan urged the government \
to publish air-quality and noise assessments for every location before construction begins.""",
)

QUAKE_ANDES = Article(
    "Magnitude 6.4 earthquake kills at least 12 in southern Peru",
    """A magnitude 6.4 earthquake struck southern Peru early on Tuesday, killing at least 12 people and \
injuring more than 140 as homes made of adobe collapsed in villages near the city of Arequipa, \
officials said.

The quake hit at 4.12am local time at a depth of 35 kilometres, about 38 kilometres south-west of \
Arequipa, according to the national geophysical institute. Residents in the city centre ran into the \
streets in their nightclothes as the shaking lasted for almost a minute.

"We are doing everything we can to reach the people who are still trapped," said Lucía Quispe, head \
of the national civil defence institute. She said rescue teams had been sent to the districts of Yura \
and Cerro Colorado, where most of the deaths were reported.

In the village of Santa Rita, a church tower built in the 18th century partly collapsed, and the main \
road to the coast was blocked by landslides in at least three places. Power was cut to around 60,000 \
homes, the regional electricity company said.

The government declared a 60-day state of emergency in the region and said the army would help clear \
roads and deliver tents, water and food to the worst-hit districts.

Peru sits on the Pacific Ring of Fire and records hundreds of earthquakes every year, most of them too \
weak to be felt.""",
)

# Another outlet's own report on the same earthquake: same names, numbers and one shared quote.
QUAKE_WIRE = Article(
    "Deadly quake rattles Arequipa, trapping residents under rubble",
    """Rescuers dug through collapsed adobe houses on Tuesday after a strong earthquake shook the \
Arequipa region of southern Peru before dawn, leaving at least 12 people dead, according to the civil \
defence institute.

The national geophysical institute measured the quake at magnitude 6.4 and placed its epicentre 38 \
kilometres south-west of Arequipa at a depth of 35 kilometres. The United States Geological Survey \
gave a slightly lower magnitude of 6.2.

Lucía Quispe, who heads the civil defence institute, told local radio: "We are doing everything we can \
to reach the people who are still trapped." Most victims lived in Yura and Cerro Colorado, two \
districts on the northern edge of the city where many homes are built from mud brick.

María Condori, a 54-year-old market trader, said she woke to the sound of plates smashing. "The whole \
house was moving like a boat. I grabbed my grandson and ran outside. Our neighbour's wall fell on the \
car," she said.

Hospitals in Arequipa reported treating more than 140 injured people, most for fractures and cuts. \
Authorities declared a 60-day state of emergency and asked residents to stay out of damaged buildings \
because of the risk of aftershocks, dozens of which were recorded during the morning.""",
)

# The first outlet's follow-up the next day: a genuinely new body on the same story.
QUAKE_UPDATE = Article(
    "Peru quake death toll rises to 19 as aftershocks hamper rescue",
    """The number of people killed by Tuesday's magnitude 6.4 earthquake in southern Peru rose to 19 on \
Wednesday, as a series of strong aftershocks forced rescuers to pull back from collapsed buildings \
near Arequipa.

Civil defence officials said two more bodies were recovered overnight from a collapsed hostel in Cerro \
Colorado and five people died in hospital from their injuries. More than 2,300 people have been left \
homeless, most of them in rural districts where adobe houses crumbled.

The strongest aftershock, of magnitude 5.1, struck shortly after midnight and caused further damage to \
the already weakened church in Santa Rita. No new casualties were reported.

Engineers from the housing ministry began inspecting schools on Wednesday, and classes across the \
region were suspended until at least Monday. The education minister said 43 school buildings had \
visible cracks.

In Yura, families who spent the night in tents set up on the football pitch complained that aid had \
been slow to arrive. "We have had one bottle of water each since yesterday," said Jorge Mamani, a \
farmer whose house was destroyed.

The government said 40 tonnes of food and 1,200 tents had been flown to Arequipa, and that the army had \
reopened two of the three blocked roads to the coast.""",
)

RATES = Article(
    "Central bank holds rates at 4.5% but signals cuts later this year",
    """The central bank kept its benchmark interest rate at 4.5 per cent on Thursday for a sixth \
consecutive meeting, but Governor Marta Lindqvist said policymakers were growing more confident that \
inflation was on track to return to target, opening the door to cuts in the second half of the year.

Consumer prices rose 2.9 per cent in the year to March, down from a peak of 8.1 per cent two years ago. \
Services inflation, which the bank watches closely because it reflects domestic wage pressures, eased \
to 4.2 per cent.

"We are not there yet, but the direction of travel is clear," Lindqvist told reporters. "If the data \
continue to come in as we expect, the case for keeping policy this tight will weaken over the summer."

Seven of the nine members of the monetary policy committee voted to hold, while two voted for an \
immediate quarter-point cut. Economists had expected a seven-to-two split.

The currency fell 0.6 per cent against the euro after the announcement, and two-year government bond \
yields dropped by eight basis points as traders added to bets on a cut in August.

The bank also lowered its growth forecast for this year to 0.8 per cent from 1.1 per cent, citing weak \
business investment and a slowdown in the construction sector.""",
)

FOOTBALL = Article(
    "Rovers come from behind to beat City 3-1 and go top",
    """Harbour Rovers came from a goal down to beat Eastfield City 3-1 at the Quayside Stadium on \
Saturday and move to the top of the table for the first time since October.

City took the lead after 14 minutes when Tomás Varga headed in a corner at the near post, and the \
visitors might have doubled their advantage had Rovers goalkeeper Sam Okafor not saved from Leon \
Becker just before half-time.

Rovers were transformed after the break. Kieran Doyle equalised in the 52nd minute with a low shot \
from the edge of the area, and substitute Ayo Mensah put the home side ahead 11 minutes later, \
turning in a cross from the left after a quick throw-in.

Doyle sealed the win in stoppage time, running clear from the halfway line and rounding the \
goalkeeper, to the delight of a sell-out crowd of 24,000.

"At half-time I told them we were playing not to lose," Rovers manager Ian Kettering said. "The second \
half was the team I know. The supporters carried us."

City, who had won their previous five league matches, drop to third, two points behind Rovers with \
nine games remaining.""",
)

BREACH = Article(
    "Norvik Telecom says hackers stole data of 1.2 million customers",
    """Norvik Telecom said on Monday that hackers had stolen the names, addresses and dates of birth of \
about 1.2 million customers, in one of the largest data breaches to hit the country's telecoms sector.

The company said the attackers gained access to a customer database through a testing server that \
had been connected to the internet by mistake. Passwords and payment card details were not affected, \
it said, but bank account numbers of around 80,000 customers who pay by direct debit were exposed.

Chief executive Helena Brandt apologised to customers and said the company had reported the breach to \
the data protection authority and the police. "We let our customers down, and we will do everything \
we can to put this right," she said in a statement.

Norvik said it would offer affected customers two years of free credit monitoring and warned them to \
be alert to phishing messages that use their personal details to appear genuine.

Shares in the company fell 7.4 per cent in early trading. Analysts said the breach could lead to a \
fine of up to 4 per cent of annual turnover under data protection rules.

The data protection authority confirmed it had opened an investigation and said it expected to \
publish initial findings within three months.""",
)

FROG = Article(
    "New species of glass frog found in Ecuador's cloud forest",
    """Scientists have described a new species of glass frog from the cloud forests of northern \
Ecuador, a tiny amphibian whose translucent belly reveals its heart, liver and digestive tract.

The frog, named Hyalinobatrachium nubicola, measures just 21 millimetres long and was found along \
fast-flowing streams at altitudes between 1,800 and 2,300 metres. Researchers first noticed it during a \
night survey in 2019, but it took four years of genetic analysis to confirm that it was distinct from \
its closest relatives.

"Males guard their eggs on the underside of leaves hanging over the water, sometimes for weeks," said \
Dr Paula Andrade, a herpetologist who led the study. "When the tadpoles hatch, they drop straight into \
the stream below."

The team recorded the species at only three sites, all within a forest reserve that is threatened by \
illegal mining upstream. The researchers have recommended that it be classified as endangered.

Glass frogs are sensitive to changes in water quality, making them useful indicators of the health of \
mountain rivers. More than 150 species are known, most of them from Central and South America.""",
)

FLOOD = Article(
    "Council approves £14m flood wall for riverside town of Ashbridge",
    """Councillors have approved plans for a £14m flood defence scheme in Ashbridge, four years after \
the River Wendle burst its banks and flooded more than 400 homes and businesses in the town centre.

The scheme includes a 1.2-kilometre concrete wall along the east bank, clad in local stone, a new pumping \
station and glass panels on the riverside walk so that residents can still see the water.

Work is due to start in September and take about two years. The Environment Agency will pay £9.5m, with \
the rest coming from the county council and a levy on riverside businesses.

"People in this town have lived with the fear of the next flood every winter since 2020," said \
councillor Margaret Ellison, who chairs the planning committee. "Today we can tell them help is \
coming."

Some residents objected to the loss of 23 mature trees along the riverbank. The council said 60 new \
trees would be planted elsewhere in the town and the wall had been lowered by 30 centimetres in places \
after consultation.

Traders on Bridge Street said they welcomed the decision but were worried about the effect of two \
years of building work on passing trade.""",
)

MARKETS_TUESDAY = Article(
    "FTSE 100 edges higher as miners rally; pound slips",
    """London's blue-chip index closed 0.4% higher at 7,512.3 points on Tuesday, lifted by mining \
stocks after copper prices rose to a three-week high, while the pound slipped against the dollar.

Miners Kestrel Resources and Halden Mining gained 3.1% and 2.8% respectively. The FTSE 250 mid-cap \
index rose 0.2% to 19,874.1.

Sterling fell 0.3% to $1.2641 after data showed retail sales fell unexpectedly in March.

Among individual stocks, housebuilder Pembury Homes jumped 6.2% after raising its full-year profit \
forecast, while grocer Fairmart dropped 4.5% after a broker downgrade.

"Investors are still trying to work out how many rate cuts to expect this year," said Joanna Reid, \
senior market analyst at Calder Securities.""",
)

# The same outlet's report a day later, written from the same template.
MARKETS_WEDNESDAY = Article(
    "FTSE 100 falls as oil majors slide; pound steady",
    """London's blue-chip index closed 0.7% lower at 7,460.1 points on Wednesday, dragged down by oil \
majors after crude prices fell for a third straight session, while the pound held steady against the \
dollar.

Oil producers Brenton Energy and Marlow Petroleum lost 2.4% and 1.9% respectively. The FTSE 250 \
mid-cap index fell 0.5% to 19,776.8.

Sterling was flat at $1.2644 after inflation data came in line with expectations.

Among individual stocks, software firm Quillon surged 9.1% after agreeing to a takeover by a US rival, \
while airline SkyMeridian dropped 3.8% after cutting its summer capacity.

"The market is taking a breather after a strong run," said Joanna Reid, senior market analyst at \
Calder Securities.""",
)

APPEAL_LEEDS = Article(
    "Appeal after man seriously injured in Leeds assault",
    """Police are appealing for witnesses after a 34-year-old man was seriously injured in an assault on \
Kirkgate in Leeds on Saturday night. Anyone with information is asked to call 101 quoting crime \
reference 13240187765 or contact Crimestoppers anonymously on 0800 555 111.""",
)

APPEAL_BRADFORD = Article(
    "Witness appeal after woman hurt in Bradford robbery",
    """Police are appealing for witnesses after a 61-year-old woman was hurt during a robbery on \
Manningham Lane in Bradford on Sunday afternoon. Anyone with information is asked to call 101 quoting \
crime reference 13240190032 or contact Crimestoppers anonymously on 0800 555 111.""",
)

VIDEO_DOG = Article(
    "Watch: Firefighters rescue dog from frozen lake",
    """Firefighters in Minnesota pulled a dog from a frozen lake on Monday after it chased a goose onto \
thin ice. Watch the video above and follow our live coverage for the latest updates on this developing \
story.""",
)

VIDEO_STORM = Article(
    "Watch: Crowds gather on Florida beach as storm approaches",
    """Crowds gathered on the beach in Fort Myers on Monday evening as the storm approached the coast. \
Watch the video above and follow our live coverage for the latest updates on this developing story.""",
)

METRO_SHENZHEN = Article(
    "深圳地铁14号线延长段正式开通",
    """深圳地铁14号线延长段于周六上午正式开通运营，新增车站五座，全长约十二公里。市交通运输局表示，延长段开通后，\
从坪山区到福田中心区的通勤时间将缩短约二十分钟。

据介绍，延长段工程于三年前动工，总投资约九十亿元。首日客流超过八万人次，部分车站在早高峰期间实行限流措施。

不少市民在社交媒体上表示，新线路大大方便了日常出行，但也有乘客反映换乘通道较长，指示标识不够清晰。\
运营方称将在一个月内完成标识的优化调整。""",
)

METRO_GUANGZHOU = Article(
    "广州地铁11号线环线全线开通",
    """广州地铁11号线于周日正式开通运营，这条环线全长四十四公里，共设三十二座车站，与十余条线路实现换乘。\
市地铁集团表示，环线开通后将有效分担中心城区既有线路的客流压力。

开通首日，不少市民专程前来体验。部分换乘站在晚高峰期间客流较大，工作人员在站台引导乘客有序上下车。\
地铁集团称将根据客流情况适时加密行车间隔。""",
)

ORIGINALS = (HK_HOUSING, QUAKE_ANDES, RATES, FOOTBALL, BREACH, FROG, FLOOD, MARKETS_TUESDAY,
             APPEAL_LEEDS, VIDEO_DOG, METRO_SHENZHEN)

SCMP_FOOTER = (
    "This article originally appeared in the South China Morning Post. Copyright (c) 2024 South China "
    "Morning Post Publishers Ltd. All rights reserved."
)

# --------------------------------------------------------------------------------------------
# Edits a syndicator or a re-publishing outlet makes
# --------------------------------------------------------------------------------------------


def paragraphs(text: str) -> list[str]:
    return [p for p in text.split("\n\n") if p.strip()]


def with_footer(article: Article, footer: str = SCMP_FOOTER, title: str | None = None) -> Article:
    return Article(title or article.title, article.text + "\n\n" + footer)


def with_furniture(article: Article) -> Article:
    """Page furniture between paragraphs, as scraped copies often carry."""
    paras = paragraphs(article.text)
    paras.insert(2, "Advertisement")
    paras.insert(5, "Story continues below advertisement")
    return Article(article.title, "\n\n".join(paras))


def drop_paragraph(article: Article, index: int) -> Article:
    paras = paragraphs(article.text)
    del paras[index]
    return Article(article.title, "\n\n".join(paras))


def add_sentence(article: Article, paragraph: int, sentence: str) -> Article:
    paras = paragraphs(article.text)
    paras[paragraph] = paras[paragraph] + " " + sentence
    return Article(article.title, "\n\n".join(paras))


def replace_words(article: Article, *pairs: tuple[str, str]) -> Article:
    text = article.text
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return Article(article.title, text)


def curly(article: Article) -> Article:
    """Typographic quotes and apostrophes, and dashes for hyphens between words."""
    text = re.sub(r'"(\w)', "\u201c\\1", article.text)
    text = text.replace('"', "\u201d").replace("'", "\u2019").replace("-", "\u2011")
    return Article(article.title, text)


def first_paragraph(article: Article, ending: str = "") -> Article:
    return Article(article.title, paragraphs(article.text)[0] + ending)


def fp_of(article: Article) -> Fingerprint:
    fp = fingerprint(article.title, article.text)
    assert fp is not None, article.title
    return fp


def index_of(*articles: Article, **kwargs: float) -> NearDuplicateIndex:
    """An index holding ``articles`` under keys 1, 2, ... with timestamps 1000, 1001, ..."""
    index = NearDuplicateIndex(**kwargs)  # type: ignore[arg-type]
    for key, article in enumerate(articles, start=1):
        index.add(key, fp_of(article), 1000.0 + key)
    return index


def find(index: NearDuplicateIndex, article: Article) -> DuplicateMatch | None:
    return index.find(fp_of(article))


# --------------------------------------------------------------------------------------------
# Copies that must be recognised
# --------------------------------------------------------------------------------------------


def test_syndicated_copy_with_origin_footer_is_a_near_duplicate() -> None:
    index = index_of(*ORIGINALS)
    copy = with_footer(HK_HOUSING, title="Hong Kong plans 30,000 prefab flats to cut public housing queue")
    match = find(index, copy)
    assert match is not None and match.key == 1 and match.kind == "near_duplicate"
    assert match.similarity == pytest.approx(1.0)  # the footer is not part of the fingerprint


def test_scraped_copy_with_ads_and_copyright_line_is_a_near_duplicate() -> None:
    index = index_of(*ORIGINALS)
    copy = with_footer(with_furniture(FLOOD), "© 2024 Wendle Valley Gazette. All rights reserved.")
    match = find(index, copy)
    assert match is not None and match.key == ORIGINALS.index(FLOOD) + 1
    assert match.similarity == pytest.approx(1.0)


def test_footer_is_recognised_even_without_a_line_break() -> None:
    run_on = Article(BREACH.title, BREACH.text + " " + SCMP_FOOTER)
    assert np.array_equal(fp_of(run_on).shingles, fp_of(BREACH).shingles)


def test_changed_headline_alone_does_not_hide_a_copy() -> None:
    index = index_of(*ORIGINALS)
    match = find(index, Article("Rate cut door opens as central bank stands pat", RATES.text))
    assert match == DuplicateMatch(ORIGINALS.index(RATES) + 1, "near_duplicate", 1.0)


@pytest.mark.parametrize(
    ("article", "edited"),
    [
        pytest.param(FOOTBALL, add_sentence(FOOTBALL, 3, "It was his 14th goal of the season."),
                     id="sentence added"),
        pytest.param(BREACH, replace_words(
            BREACH, (" Passwords and payment card details were not affected, it said, but bank account numbers "
                     "of around 80,000 customers who pay by direct debit were exposed.", "")),
            id="sentence removed"),
        pytest.param(RATES, drop_paragraph(RATES, 4), id="paragraph removed"),
        pytest.param(FROG, replace_words(FROG, ("21 millimetres", "21 milimetres"), ("altitudes", "altitudez"),
                                         ("herpetologist", "herpetoligist"), ("threatened", "threatend")),
                     id="typos"),
        pytest.param(QUAKE_ANDES, Article(QUAKE_ANDES.title, "AREQUIPA, Peru (Andes Daily) — "
                                          + QUAKE_ANDES.text), id="dateline added"),
    ],
)
def test_minor_edits_are_near_duplicates(article: Article, edited: Article) -> None:
    index = index_of(*ORIGINALS)
    match = find(index, edited)
    assert match is not None
    assert (match.key, match.kind) == (ORIGINALS.index(article) + 1, "near_duplicate")
    assert match.similarity < 1.0  # the edit is seen, and tolerated


def test_typographic_quotes_and_dashes_do_not_count_as_edits() -> None:
    index = index_of(*ORIGINALS)
    assert find(index, curly(FLOOD)) == DuplicateMatch(ORIGINALS.index(FLOOD) + 1, "near_duplicate", 1.0)


def test_first_paragraph_copy_is_contained_in_the_full_article() -> None:
    index = index_of(*ORIGINALS)
    summary = first_paragraph(QUAKE_ANDES, " […]")
    match = find(index, summary)
    assert match is not None and match.key == 2 and match.kind == "contained"
    assert match.similarity == pytest.approx(1.0)


def test_full_article_arriving_after_its_feed_summary_is_recognised() -> None:
    """The summary is indexed first; the full text from another outlet then matches it."""
    summary = Article(BREACH.title, " ".join(paragraphs(BREACH.text)[:2][:1]) + " Read more")
    index = index_of(summary, RATES, FROG)
    match = find(index, with_footer(BREACH, "This story was first published by the Baltic Ledger."))
    assert match is not None and match.key == 1 and match.kind == "contained"


def test_two_sentence_teaser_with_ellipsis_is_contained() -> None:
    index = index_of(*ORIGINALS)
    lead = paragraphs(RATES.text)[0] + " " + paragraphs(RATES.text)[1].split(". ")[0] + "…"
    match = find(index, Article(RATES.title, lead))
    assert match is not None and match.key == ORIGINALS.index(RATES) + 1 and match.kind == "contained"


def test_guid_churn_reissued_article_matches_its_first_issue() -> None:
    """Same text under a new guid and date: nothing new for the reader."""
    index = index_of(*ORIGINALS)
    reissue = Article(HK_HOUSING.title + " (updated)", HK_HOUSING.text)
    assert find(index, reissue) == DuplicateMatch(1, "near_duplicate", 1.0)


def test_chinese_copy_is_recognised_and_a_different_chinese_story_is_not() -> None:
    index = index_of(*ORIGINALS)
    key = ORIGINALS.index(METRO_SHENZHEN) + 1
    copy = Article(
        METRO_SHENZHEN.title,
        METRO_SHENZHEN.text.replace("首日客流超过八万人次，", "").replace("，", ",") + "\n\n（本文来源：南方日报）",
    )
    match = find(index, copy)
    assert match is not None and match.key == key and match.kind == "near_duplicate"
    assert find(index, METRO_GUANGZHOU) is None


# --------------------------------------------------------------------------------------------
# Texts that must stay separate
# --------------------------------------------------------------------------------------------


def test_other_outlets_own_report_on_the_same_event_is_not_a_copy() -> None:
    """Same earthquake, same names, numbers and a shared official quote: still two articles."""
    assert find(index_of(QUAKE_ANDES), QUAKE_WIRE) is None
    assert find(index_of(QUAKE_WIRE), QUAKE_ANDES) is None
    assert find(index_of(QUAKE_WIRE), first_paragraph(QUAKE_ANDES)) is None


def test_update_with_a_new_body_is_not_a_copy_of_the_first_report() -> None:
    assert find(index_of(QUAKE_ANDES, QUAKE_WIRE), QUAKE_UPDATE) is None
    assert find(index_of(QUAKE_UPDATE), QUAKE_ANDES) is None


def test_daily_reports_written_from_one_template_are_not_copies() -> None:
    assert find(index_of(MARKETS_TUESDAY), MARKETS_WEDNESDAY) is None


def test_short_items_sharing_stock_phrases_are_not_copies() -> None:
    assert find(index_of(APPEAL_LEEDS, VIDEO_DOG), APPEAL_BRADFORD) is None
    assert find(index_of(APPEAL_LEEDS, VIDEO_DOG), VIDEO_STORM) is None


def test_short_identical_bodies_count_only_under_matching_headlines() -> None:
    """A feed that gives every item the same stock blurb must not collapse its items into one."""
    blurb = ("Get the latest headlines, analysis and opinion from our newsroom, updated throughout the day "
             "by our reporters and editors.")
    index = index_of(Article("Minister resigns over expenses claims", blurb))
    assert find(index, Article("Storm warning issued for the north coast", blurb)) is None
    assert find(index, Article("Minister resigns over expenses claims", blurb)) is not None


def test_text_too_short_to_judge_has_no_fingerprint() -> None:
    assert fingerprint("Breaking", "Submitted by /u/newsbot [link] [comments]") is None
    assert fingerprint("Some title", "") is None
    assert fingerprint("Title", "Advertisement\n\n" + SCMP_FOOTER) is None


def test_a_one_sentence_item_that_mentions_copyright_keeps_its_text() -> None:
    """Footer removal never empties an item: this sentence is the news, not a footer."""
    text = ("The appeals court ruled that the copyright in the photographs belongs to the agency that "
            "commissioned them, not to the photographer. All rights reserved.")
    fp = fingerprint("Court rules on photo copyright", text)
    assert fp is not None
    assert fp.token_count == len(dedupe.fold_tokens(text)) - len(dedupe.fold_tokens("All rights reserved."))
    only = "This story is developing and will be updated as firefighters reach the harbour warehouse."
    only_fp = fingerprint("Fire at harbour warehouse", only)
    assert only_fp is not None and only_fp.token_count == len(dedupe.fold_tokens(only))


def test_unrelated_articles_do_not_match() -> None:
    index = index_of(*ORIGINALS)
    for article in (QUAKE_WIRE, QUAKE_UPDATE, MARKETS_WEDNESDAY, APPEAL_BRADFORD, VIDEO_STORM, METRO_GUANGZHOU):
        assert find(index, article) is None, article.title


# --------------------------------------------------------------------------------------------
# Folding, similarity and thresholds
# --------------------------------------------------------------------------------------------


def test_case_accents_and_full_width_forms_are_folded() -> None:
    plain = fingerprint("Liu Zhongyi wins", "Liu Zhongyi won the final in Shanghai on Sunday " * 3)
    folded = fingerprint("LIÚ ZHŌNGYÌ WINS", "LIÚ ZHŌNGYÌ won the final in Ｓｈａｎｇｈａｉ on Sunday " * 3)
    assert plain is not None and folded == plain


def test_signature_is_datasketch_minhash_of_the_shingles() -> None:
    fp = fp_of(RATES)
    tokens = [t.encode() for t in dedupe.fold_tokens(RATES.text)]
    shingle_hashes = dedupe._shingle_hashes(tokens)  # the shingle hashing is internal
    reference = MinHash(num_perm=dedupe.NUM_PERM, seed=dedupe.SEED, scheme="affine32", hashfunc=int)
    reference.update_batch(shingle_hashes.tolist())
    assert np.array_equal(fp.signature, reference.hashvalues)


def word_shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"[^\W_]+", text.casefold())
    return {tuple(words[i : i + dedupe.SHINGLE_SIZE]) for i in range(len(words) - dedupe.SHINGLE_SIZE + 1)}


def test_similarity_is_the_exact_jaccard_of_word_shingles() -> None:
    edited = add_sentence(drop_paragraph(FOOTBALL, 2), 0, "Rovers had lost their previous two home games.")
    a, b = word_shingles(FOOTBALL.text), word_shingles(edited.text)
    expected = len(a & b) / len(a | b)
    match = NearDuplicateIndex(threshold=0.5).compare(fp_of(edited), fp_of(FOOTBALL))
    assert match is not None and match.similarity == pytest.approx(expected)


def test_near_duplicate_threshold_is_inclusive() -> None:
    original, edited = fp_of(FOOTBALL), fp_of(drop_paragraph(FOOTBALL, 2))
    similarity = NearDuplicateIndex(threshold=0.3).compare(edited, original)
    assert similarity is not None and similarity.kind == "near_duplicate"
    at = NearDuplicateIndex(threshold=similarity.similarity)
    above = NearDuplicateIndex(threshold=similarity.similarity + 0.01, containment_threshold=1.0)
    at.add(1, original, 1.0)
    above.add(1, original, 1.0)
    assert at.find(edited) == DuplicateMatch(1, "near_duplicate", similarity.similarity)
    # the edited text is still mostly inside the original, but not all of it: no containment at 1.0
    assert above.find(edited) is None


def test_containment_threshold_is_inclusive() -> None:
    original = fp_of(QUAKE_ANDES)
    teaser = fp_of(replace_words(first_paragraph(QUAKE_ANDES), ("early on Tuesday", "before dawn on Tuesday")))
    containment = NearDuplicateIndex(containment_threshold=0.5).compare(teaser, original)
    assert containment is not None and containment.kind == "contained" and containment.similarity < 1.0
    at = NearDuplicateIndex(containment_threshold=containment.similarity)
    above = NearDuplicateIndex(containment_threshold=containment.similarity + 0.01)
    at.add(7, original, 1.0)
    above.add(7, original, 1.0)
    assert at.find(teaser) == DuplicateMatch(7, "contained", containment.similarity)
    assert above.find(teaser) is None


def test_containment_needs_a_minimum_size() -> None:
    """A one-line excerpt inside a long article is a quote, not a copy."""
    excerpt = Article(QUAKE_ANDES.title, "We are doing everything we can to reach the people who are still trapped")
    fp = fp_of(excerpt)
    assert len(fp.shingles) < dedupe.MIN_CONTAINED_SHINGLES
    assert NearDuplicateIndex(containment_threshold=0.5).compare(fp, fp_of(QUAKE_ANDES)) is None
    longer = Article(excerpt.title, excerpt.text + ", said Lucía Quispe, head of the national civil defence institute")
    assert len(fp_of(longer).shingles) >= dedupe.MIN_CONTAINED_SHINGLES
    assert NearDuplicateIndex().compare(fp_of(longer), fp_of(QUAKE_ANDES)) == DuplicateMatch(-1, "contained", 1.0)


def test_best_match_is_the_most_similar_original() -> None:
    edited = drop_paragraph(FROG, 3)
    index = index_of(edited, FROG)  # the closer one is indexed second
    assert find(index, FROG) == DuplicateMatch(2, "near_duplicate", 1.0)
    assert index.find(fp_of(FROG), exclude=2) is not None


# --------------------------------------------------------------------------------------------
# Storage and bounds
# --------------------------------------------------------------------------------------------


def test_fingerprint_survives_a_bytes_round_trip() -> None:
    for article in (*ORIGINALS, curly(FLOOD)):
        fp = fp_of(article)
        data = fingerprint_to_bytes(fp)
        restored = fingerprint_from_bytes(data)
        assert restored == fp
        assert restored.title_key == fp.title_key and restored.token_count == fp.token_count
        # compact: two signatures, the shingle hashes and the folded title, plus a small header
        overhead = len(data) - 8 * dedupe.NUM_PERM - 4 * len(fp.shingles) - len(fp.title_key.encode())
        assert 0 < overhead <= 32


def test_index_rebuilt_from_stored_bytes_gives_the_same_answers() -> None:
    stored = [(key, fingerprint_to_bytes(fp_of(a))) for key, a in enumerate(ORIGINALS, start=1)]
    restarted = NearDuplicateIndex()
    for key, data in stored:
        restarted.add(key, fingerprint_from_bytes(data), 1000.0 + key)
    fresh = index_of(*ORIGINALS)
    for probe in (with_footer(HK_HOUSING), first_paragraph(QUAKE_ANDES), curly(FLOOD), QUAKE_WIRE):
        assert restarted.find(fp_of(probe)) == fresh.find(fp_of(probe))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[:20], id="truncated header"),
        pytest.param(lambda b: b[:-3], id="truncated shingles"),
        pytest.param(lambda b: b"XXXX" + b[4:], id="wrong magic"),
        pytest.param(lambda b: b[:4] + bytes([99]) + b[5:], id="other format version"),
        pytest.param(lambda b: b + b"\x00\x00\x00\x00", id="trailing bytes"),
        pytest.param(lambda b: b[:-8] + b[-4:] + b[-8:-4], id="shingles out of order"),
    ],
)
def test_damaged_or_foreign_bytes_are_rejected(damage) -> None:  # type: ignore[no-untyped-def]
    data = fingerprint_to_bytes(fp_of(RATES))
    with pytest.raises(ValueError):
        fingerprint_from_bytes(damage(data))


def synthetic(i: int, rng: np.random.Generator, vocabulary: np.ndarray) -> Fingerprint:
    words = rng.choice(vocabulary, size=40)
    fp = fingerprint(f"item {i}", " ".join(words))
    assert fp is not None
    return fp


@pytest.fixture(scope="module")
def synthetic_fps() -> list[Fingerprint]:
    rng = np.random.default_rng(7)
    vocabulary = np.array(sorted(set(re.findall(r"[a-z]+", " ".join(a.text for a in ORIGINALS).lower()))))
    return [synthetic(i, rng, vocabulary) for i in range(3000)]


def test_max_entries_bounds_the_index_and_evicts_the_oldest_first(synthetic_fps: list[Fingerprint]) -> None:
    index = NearDuplicateIndex(max_entries=50)
    for key, fp in enumerate(synthetic_fps[:120]):
        # timestamps out of insertion order: key 0 is the newest of all
        index.add(key, fp, 5000.0 if key == 0 else float(key))
    assert len(index) == 50
    assert index.find(synthetic_fps[0]) == DuplicateMatch(0, "near_duplicate", 1.0)
    assert index.find(synthetic_fps[1]) is None  # oldest timestamps went first
    assert index.find(synthetic_fps[119]) == DuplicateMatch(119, "near_duplicate", 1.0)
    assert index.find(synthetic_fps[70]) is None


def test_evict_older_than_applies_the_retention_window(synthetic_fps: list[Fingerprint]) -> None:
    index = NearDuplicateIndex()
    for key, fp in enumerate(synthetic_fps[:100]):
        index.add(key, fp, float(key))
    assert index.evict_older_than(40.0) == 40
    assert index.evict_older_than(40.0) == 0
    assert len(index) == 60
    assert index.find(synthetic_fps[39]) is None
    assert index.find(synthetic_fps[40]) == DuplicateMatch(40, "near_duplicate", 1.0)


def test_heavy_churn_keeps_every_live_entry_findable(synthetic_fps: list[Fingerprint]) -> None:
    """Thousands of adds and evictions (the band tables compact themselves) lose nothing live."""
    index = NearDuplicateIndex(max_entries=500)
    for key, fp in enumerate(synthetic_fps):
        index.add(key, fp, float(key))
        if key % 700 == 699:
            index.evict_older_than(key - 200.0)
    assert len(index) <= 500
    index.evict_older_than(len(synthetic_fps) - 200.0)
    assert len(index) == 200
    for key in range(len(synthetic_fps) - 200, len(synthetic_fps)):
        assert index.find(synthetic_fps[key]) == DuplicateMatch(key, "near_duplicate", 1.0)
    assert index.find(synthetic_fps[len(synthetic_fps) - 201]) is None


def test_adding_a_key_again_replaces_its_fingerprint() -> None:
    index = index_of(RATES)
    index.add(1, fp_of(FROG), 2000.0)
    assert len(index) == 1
    assert find(index, RATES) is None
    assert find(index, FROG) == DuplicateMatch(1, "near_duplicate", 1.0)


def test_the_value_stored_with_an_original_comes_back_with_its_copies() -> None:
    """The bot keeps the original's story id there; adding the key again replaces it."""
    index = NearDuplicateIndex()
    index.add(1, fp_of(RATES), 1000.0, value=2**40 + 7)
    index.add(2, fp_of(FROG), 1001.0)
    match = find(index, curly(RATES))
    assert match is not None and (match.key, match.value) == (1, 2**40 + 7)
    assert find(index, FROG) == DuplicateMatch(2, "near_duplicate", 1.0, 0)
    index.add(1, fp_of(RATES), 1002.0, value=-5)
    assert len(index) == 2
    assert find(index, RATES) == DuplicateMatch(1, "near_duplicate", 1.0, -5)


def test_keys_and_values_are_64_bit_integers() -> None:
    index = NearDuplicateIndex()
    with pytest.raises(OverflowError):
        index.add(2**63, fp_of(RATES), 1.0)
    with pytest.raises(OverflowError):
        index.add(1, fp_of(RATES), 1.0, value=-(2**63) - 1)
    with pytest.raises(TypeError):
        index.add("item 1", fp_of(RATES), 1.0)  # type: ignore[arg-type]
    assert len(index) == 0  # a refused add changes nothing
    index.add(-(2**63), fp_of(RATES), 1.0)
    assert -(2**63) in index and 2**63 not in index and "item" not in index


def test_eviction_takes_the_oldest_timestamps_whatever_the_arrival_order(synthetic_fps: list[Fingerprint]) -> None:
    """Published times arrive out of order and tie: the oldest go first, of equal times the one
    indexed first. So the index always holds the newest ``max_entries`` by (time, arrival)."""
    times = np.random.default_rng(3).integers(0, 60, size=400).astype(float).tolist()
    index = NearDuplicateIndex(max_entries=100)
    for key, ts in enumerate(times):
        index.add(key, synthetic_fps[key], ts)
    newest = sorted(range(len(times)), key=lambda k: (times[k], k))[-100:]
    assert len(index) == 100
    assert [key for key in range(len(times)) if key in index] == sorted(newest)


def test_a_key_added_again_is_evicted_by_its_new_timestamp(synthetic_fps: list[Fingerprint]) -> None:
    index = NearDuplicateIndex(max_entries=2)
    index.add(1, synthetic_fps[1], 10.0)
    index.add(2, synthetic_fps[2], 20.0)
    index.add(1, synthetic_fps[3], 30.0)  # key 1 again: now the newest
    index.add(3, synthetic_fps[4], 40.0)
    assert (1 in index, 2 in index, 3 in index) == (True, False, True)
    assert index.find(synthetic_fps[3]) == DuplicateMatch(1, "near_duplicate", 1.0)
    assert index.find(synthetic_fps[1]) is None


def test_lookups_stay_exact_through_many_evictions_and_compactions(synthetic_fps: list[Fingerprint]) -> None:
    """Thousands of adds, re-adds and evictions make the index compact its storage again and
    again: every live entry is still found with its value, and nothing removed comes back.

    ``expected`` is the bookkeeping spelled out: key -> (time, arrival, fingerprint, value)."""
    rng = np.random.default_rng(11)
    index = NearDuplicateIndex(max_entries=300)
    expected: dict[int, tuple[float, int, int, int]] = {}

    def check(added: int) -> None:
        assert len(index) == len(expected)
        for key, (_, _, i, value) in expected.items():
            assert index.find(synthetic_fps[i]) == DuplicateMatch(key, "near_duplicate", 1.0, value)
        live = {i for _, _, i, _ in expected.values()}
        for i in range(0, added, 7):
            assert i in live or index.find(synthetic_fps[i]) is None

    for arrival, fp in enumerate(synthetic_fps):
        key = arrival if rng.random() < 0.8 else int(rng.integers(0, arrival + 1))  # some keys come again
        ts = float(arrival + rng.integers(0, 50))  # out of order
        index.add(key, fp, ts, value=3 * arrival)
        expected[key] = (ts, arrival, arrival, 3 * arrival)
        while len(expected) > 300:
            del expected[min(expected, key=lambda k: expected[k][:2])]
        if arrival % 700 == 699:
            cut = arrival - 150.0
            gone = [k for k, entry in expected.items() if entry[0] < cut]
            assert index.evict_older_than(cut) == len(gone)
            for k in gone:
                del expected[k]
        if arrival in (1500, len(synthetic_fps) - 1):
            check(arrival + 1)


def test_ties_among_many_equal_originals_go_to_the_oldest(synthetic_fps: list[Fingerprint]) -> None:
    """Whether a few or many originals are equally similar (the index judges many at once), the
    match is the one with the oldest timestamp, then the one indexed first."""
    for copies in (3, 40):
        index = NearDuplicateIndex()
        for key in range(copies):
            index.add(key, synthetic_fps[0], 100.0 - key % 5)
            index.add(1000 + key, synthetic_fps[1 + key], 50.0)  # unrelated texts around them
        oldest = min(range(copies), key=lambda k: (100.0 - k % 5, k))
        assert index.find(synthetic_fps[0]) == DuplicateMatch(oldest, "near_duplicate", 1.0)
        assert index.find(synthetic_fps[0], exclude=oldest) != DuplicateMatch(oldest, "near_duplicate", 1.0)


def test_the_index_works_under_a_profiler(synthetic_fps: list[Fingerprint]) -> None:
    """A profiler holds references to the arrays the index would grow in place; it copies them then."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        index = NearDuplicateIndex(max_entries=500)
        for key, fp in enumerate(synthetic_fps[:2500]):
            index.add(key, fp, float(key))
    finally:
        profiler.disable()
    for key in range(2000, 2500, 5):
        assert index.find(synthetic_fps[key]) == DuplicateMatch(key, "near_duplicate", 1.0)
    assert index.find(synthetic_fps[1999]) is None


# --------------------------------------------------------------------------------------------
# Originals kept in the caller's store (``load`` and ``persisted``)
# --------------------------------------------------------------------------------------------


class Store:
    """The caller's store of fingerprints, as the bot keeps them (bytes), with a log of fetches.
    ``load`` hands out decoded fingerprints, or the stored bytes themselves with ``raw``."""

    def __init__(self, *, raw: bool = False) -> None:
        self.data: dict[int, bytes] = {}
        self.fetches: list[list[int]] = []
        self.raw = raw

    def keep(self, key: int, fp: Fingerprint) -> None:
        self.data[key] = fingerprint_to_bytes(fp)

    def load(self, keys: Sequence[int]) -> dict[int, Fingerprint | bytes]:
        self.fetches.append(list(keys))
        found = {key: self.data[key] for key in keys if key in self.data}
        return dict(found) if self.raw else {key: fingerprint_from_bytes(data) for key, data in found.items()}


def stored_index(store: Store, *articles: Article, **kwargs: int) -> NearDuplicateIndex:
    """An index over ``store`` holding ``articles`` under keys 1, 2, ... , all persisted."""
    index = NearDuplicateIndex(load=store.load, **kwargs)  # type: ignore[arg-type]
    for key, article in enumerate(articles, start=1):
        index.add(key, fp_of(article), 1000.0 + key)
        store.keep(key, fp_of(article))
    index.persisted()
    return index


@pytest.mark.parametrize("raw", [False, True], ids=["fingerprints", "bytes"])
def test_a_copy_of_a_persisted_original_is_found_through_the_store(raw: bool) -> None:
    store = Store(raw=raw)
    index = stored_index(store, *ORIGINALS)
    in_memory = index_of(*ORIGINALS)
    for probe in (with_footer(HK_HOUSING), first_paragraph(QUAKE_ANDES), curly(FLOOD), QUAKE_WIRE,
                  with_footer(VIDEO_DOG), VIDEO_STORM, FROG):
        assert index.find(fp_of(probe)) == in_memory.find(fp_of(probe))
    assert find(index, with_footer(HK_HOUSING)) == DuplicateMatch(1, "near_duplicate", 1.0)
    assert store.fetches, "persisted originals are fetched, not kept"


def test_each_find_fetches_its_candidates_at_most_once_and_all_together() -> None:
    store = Store()
    index = stored_index(store, RATES, drop_paragraph(RATES, 2), first_paragraph(RATES), FROG, cache_size=0)
    assert find(index, RATES) == DuplicateMatch(1, "near_duplicate", 1.0)
    assert len(store.fetches) == 1 and 1 in store.fetches[0] and 4 not in store.fetches[0]
    assert find(index, with_footer(FLOOD)) is None
    assert len(store.fetches) == 1, "a text with no candidates costs no fetch"


def test_an_original_the_store_cannot_return_is_not_a_match() -> None:
    store = Store()
    index = stored_index(store, RATES, FROG)
    del store.data[1]
    assert find(index, RATES) is None
    assert find(index, FROG) == DuplicateMatch(2, "near_duplicate", 1.0)


def test_stored_bytes_that_cannot_be_read_are_not_a_match() -> None:
    store = Store(raw=True)
    index = stored_index(store, RATES, FROG)
    store.data[1] = store.data[1][:-4]  # truncated
    store.data[2] = b"XXXX" + store.data[2][4:]  # not a fingerprint
    assert find(index, RATES) is None
    assert find(index, FROG) is None


def test_originals_added_since_the_last_persisted_need_no_fetch() -> None:
    store = Store()
    index = stored_index(store, RATES)
    index.add(2, fp_of(FROG), 2000.0)  # not in the store yet
    assert find(index, curly(FROG)) == DuplicateMatch(2, "near_duplicate", 1.0)
    assert store.fetches == []


def test_fetched_originals_are_cached_up_to_cache_size() -> None:
    store = Store()
    articles = (RATES, FROG, FLOOD, FOOTBALL, BREACH)
    index = stored_index(store, *articles, cache_size=2)
    for article in articles:
        assert find(index, article) is not None
    assert len(store.fetches) == 5
    assert find(index, BREACH) is not None and find(index, FOOTBALL) is not None  # the two latest
    assert len(store.fetches) == 5
    assert find(index, RATES) is not None  # long gone from the cache
    assert len(store.fetches) == 6


def test_a_key_added_again_after_persisting_is_judged_by_its_new_fingerprint() -> None:
    store = Store()
    index = stored_index(store, RATES, FOOTBALL)
    assert find(index, RATES) == DuplicateMatch(1, "near_duplicate", 1.0)  # now cached
    index.add(1, fp_of(FROG), 2000.0)
    store.keep(1, fp_of(FROG))
    index.persisted()
    assert find(index, RATES) is None
    assert find(index, FROG) == DuplicateMatch(1, "near_duplicate", 1.0)


def test_persisted_without_a_store_keeps_everything_in_memory() -> None:
    index = index_of(RATES, FROG)
    index.persisted()
    assert find(index, RATES) == DuplicateMatch(1, "near_duplicate", 1.0)
    assert find(index, with_footer(FROG)) == DuplicateMatch(2, "near_duplicate", 1.0)


def test_a_stored_index_answers_like_an_in_memory_one_through_churn(synthetic_fps: list[Fingerprint]) -> None:
    """Adds, re-adds, evictions and compactions with `persisted` every few adds (as the bot calls
    it after each write): every answer is the in-memory index's, with ``exclude`` too."""
    rng = np.random.default_rng(5)
    store = Store(raw=True)
    stored = NearDuplicateIndex(max_entries=400, load=store.load, cache_size=64)
    in_memory = NearDuplicateIndex(max_entries=400)
    for arrival, fp in enumerate(synthetic_fps):
        key = arrival if rng.random() < 0.9 else int(rng.integers(0, arrival + 1))
        ts = float(arrival + rng.integers(0, 50))
        for index in (stored, in_memory):
            index.add(key, fp, ts, value=arrival)
        store.keep(key, fp)
        if rng.random() < 0.2:
            stored.persisted()
        if arrival % 500 == 499:
            assert stored.evict_older_than(arrival - 300.0) == in_memory.evict_older_than(arrival - 300.0)
        if arrival % 3 == 0:
            probe = synthetic_fps[int(rng.integers(0, arrival + 1))]
            exclude = key if rng.random() < 0.3 else None
            assert stored.find(probe, exclude=exclude) == in_memory.find(probe, exclude=exclude)
    assert len(stored) == len(in_memory) > 0


def test_keys_and_values_beyond_32_bits_arriving_late_are_kept_exactly(synthetic_fps: list[Fingerprint]) -> None:
    index = NearDuplicateIndex()
    for key in range(100):
        index.add(key, synthetic_fps[key], float(key), value=key)
    index.add(2**40 + 1, synthetic_fps[100], 100.0, value=-(2**50))
    index.add(-(2**35), synthetic_fps[101], 101.0, value=2**62)
    assert index.find(synthetic_fps[5]) == DuplicateMatch(5, "near_duplicate", 1.0, 5)
    assert index.find(synthetic_fps[100]) == DuplicateMatch(2**40 + 1, "near_duplicate", 1.0, -(2**50))
    assert index.find(synthetic_fps[101]) == DuplicateMatch(-(2**35), "near_duplicate", 1.0, 2**62)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        NearDuplicateIndex(threshold=0.0)
    with pytest.raises(ValueError):
        NearDuplicateIndex(containment_threshold=1.5)
    with pytest.raises(ValueError):
        NearDuplicateIndex(max_entries=0)
    with pytest.raises(ValueError):
        NearDuplicateIndex(cache_size=-1)


# --------------------------------------------------------------------------------------------
# Precision and recall on a small labelled set
# --------------------------------------------------------------------------------------------


def labelled_queries() -> list[tuple[str, Article, int | None]]:
    """(label, incoming item, key of its original in ORIGINALS or None for a new article)."""

    def key(article: Article) -> int:
        return ORIGINALS.index(article) + 1

    return [
        ("syndicated with footer", with_footer(HK_HOUSING), key(HK_HOUSING)),
        ("footer and new headline", with_footer(FROG, "This story originally ran on the Andes Science Desk.",
                                                "Tiny see-through frog discovered in Ecuador"), key(FROG)),
        ("ads and copyright line", with_footer(with_furniture(BREACH), "Copyright 2024 Nordic Wire."),
         key(BREACH)),
        ("headline changed", Article("Rovers top the table after comeback win", FOOTBALL.text), key(FOOTBALL)),
        ("sentence added", add_sentence(RATES, 2, "Markets had priced in a cut by June."), key(RATES)),
        ("paragraph removed", drop_paragraph(FLOOD, 4), key(FLOOD)),
        ("two paragraphs removed", drop_paragraph(drop_paragraph(HK_HOUSING, 5), 3), key(HK_HOUSING)),
        ("typos fixed", replace_words(QUAKE_ANDES, ("nightclothes", "night clothes"), ("tower", "towre")),
         key(QUAKE_ANDES)),
        ("curly quotes", curly(RATES), key(RATES)),
        ("first paragraph", first_paragraph(FLOOD), key(FLOOD)),
        ("first paragraph + read more", first_paragraph(FOOTBALL, " Read more at Quayside Sport."),
         key(FOOTBALL)),
        ("two-paragraph teaser", Article(FROG.title, "\n\n".join(paragraphs(FROG.text)[:2])), key(FROG)),
        ("guid churn", Article(BREACH.title, BREACH.text), key(BREACH)),
        ("reissue with correction", replace_words(MARKETS_TUESDAY, ("6.2%", "6.3%")), key(MARKETS_TUESDAY)),
        ("chinese copy", Article(METRO_SHENZHEN.title, METRO_SHENZHEN.text.replace("。", ". ")),
         key(METRO_SHENZHEN)),
        ("short item re-issued", Article(APPEAL_LEEDS.title, APPEAL_LEEDS.text.replace("Saturday", "Sat")),
         key(APPEAL_LEEDS)),
        ("other outlet, same quake", QUAKE_WIRE, None),
        ("update, new body", QUAKE_UPDATE, None),
        ("template, next day", MARKETS_WEDNESDAY, None),
        ("police appeal, other crime", APPEAL_BRADFORD, None),
        ("video blurb, other story", VIDEO_STORM, None),
        ("chinese, other line", METRO_GUANGZHOU, None),
        ("quote excerpt", Article(QUAKE_WIRE.title, paragraphs(QUAKE_WIRE.text)[2]), None),
        ("same topic, other bank", replace_words(
            Article("Second central bank holds steady", paragraphs(MARKETS_WEDNESDAY.text)[2] + " "
                    + paragraphs(RATES.text)[3]), ("Seven of the nine", "Five of the seven")), None),
    ]


def precision_recall(index: NearDuplicateIndex) -> tuple[float, float, list[str]]:
    tp = fp = fn = 0
    wrong: list[str] = []
    for label, article, expected in labelled_queries():
        match = find(index, article)
        got = match.key if match else None
        if got == expected:
            tp += got is not None
            continue
        if got is not None:
            fp += 1
        if expected is not None:
            fn += 1
        wrong.append(f"{label}: expected {expected}, got {match}")
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return precision, recall, wrong


def test_precision_and_recall_on_the_labelled_set() -> None:
    precision, recall, wrong = precision_recall(index_of(*ORIGINALS))
    print(f"\ndedupe labelled set: precision {precision:.2f}, recall {recall:.2f}; misses: {wrong}")
    assert precision == 1.0, wrong
    assert recall >= 0.9, wrong
