"""Deterministic generator of realistic English user comments for benchmarks.

Why generated and not a packaged corpus: the benchmark needs 100k+ *distinct* comments whose
vocabulary keeps growing (new surnames, company names, usernames, order numbers...) so that
memory tests really exercise spaCy's StringStore/Vocab growth, plus a controlled length
distribution (median ~100-200 chars, a tail of multi-paragraph reviews up to 5,000+ chars, and a few
20k-char texts). All text comes from the templates and word lists below, written for this project;
no downloads, no third-party data, no licence questions.

Public API:
    generate(n, seed=7) -> list[str]     n comments, same output for the same (n, seed)
    iter_generate(n, seed=7)             the same comments, lazily
    long_texts(k, seed=11, chars=20_000) -> list[str]   k very long texts (~`chars` characters)

CLI: python -m bench.corpus --n 10000 --stats
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Iterator


def _w(words: str) -> list[str]:
    """Whitespace-separated word list (keeps the long vocabularies readable)."""
    return words.split()


# Hand-laid word lists; the formatter would put one item per line and make them unreadable.
# fmt: off
# ---------------------------------------------------------------------------------------------
# Vocabulary. Fixed lists give realistic, frequent entities; the synthesized parts (surnames,
# company names, usernames, order/ticket numbers, SKUs) keep producing unseen strings as n grows.
# ---------------------------------------------------------------------------------------------

FIRST_NAMES = _w(
    "James Mary Olivia Liam Emma Noah Ava Lucas Mia Ethan Sofia Mateo Chloe Daniel Grace Henry "
    "Isabella Jack Amelia Leo Harper Owen Nora Samuel Lily Caleb Zoe Aaron Hannah Ryan Layla "
    "Priya Arjun Ananya Rohan Wei Mei Jun Hiroshi Yuki Kenji Sakura Minh Linh Thanh Jin-woo "
    "Seo-yeon Aisha Omar Fatima Yusuf Layla Karim Amara Chidi Oluwaseun Ngozi Kwame Abena "
    "Thabo Zanele Carlos Lucia Diego Valentina Javier Camila Mateus Beatriz Joao Rafael "
    "Giulia Marco Francesca Luca Pierre Camille Julien Margaux Lars Ingrid Sven Astrid Piotr "
    "Agnieszka Tomasz Katarzyna Dmitri Anya Sergei Olena Niamh Siobhan Cian Aoife Fergus Mhairi "
    "Tariq Noor Hamza Leila Rahul Sneha Vikram Deepa Kofi Esi Tunde Bisi Maya Eli Ruth Ezra"
)
# Non-ASCII names appear often enough to exercise UTF-8 handling everywhere.
FIRST_NAMES += ["Zoë", "José", "Björn", "Chloé", "Léa", "Søren", "Małgorzata", "Renée", "Jürgen", "Inês"]

REAL_SURNAMES = _w(
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis "
    "Walker Young Allen King Wright Scott Nguyen Hill Green Adams Baker Nelson Carter Mitchell "
    "Patel Shah Gupta Singh Kumar Chen Wang Li Zhang Liu Tanaka Suzuki Nakamura Kim Park Choi "
    "Okafor Adeyemi Mensah Boateng Nkosi Dlamini Silva Santos Oliveira Costa Pereira Rossi "
    "Bianchi Ferrari Dubois Moreau Laurent Fischer Schmidt Weber Becker Wagner Kowalski Nowak "
    "Wisniewski Ivanov Petrov Sokolov O'Brien Murphy Kelly Byrne MacLeod Campbell Fraser Haddad "
    "Khalil Farouk Hussain Rahman Iyer Menon Reddy Nair Osei Owusu Jensen Hansen Larsen Nilsson"
)
REAL_SURNAMES += ["Müller", "García", "Sánchez", "Łukasz", "Ødegaard", "Çelik", "Núñez", "Jäger"]

_ONSETS = _w(
    "Bar Kel Mor Ash Dun Fen Gal Hal Iv Jor Lin Mar Nor Ost Pem Quin Rad Sel Tor Vel Wex Yar "
    "Zan Cor Bren Stan Hol Mack Pet Ros Al Bel Cas Dra Ev Far Gor Hen Kir Lor Mal Nav Or Pra "
    "Riv Sar Tal Ul Var Wil"
)
_MIDS = [*_w("a e i o u an en in or ar el il on ur ri ro la le"), ""]
_SURNAME_ENDS = _w(
    "ford sen son ski ova ez ini well berg stein ton ley ham ov ak ero ard ich man dottir "
    "quist wood field ridge worth mont ssen vic enko oglu"
)
_COMPANY_ENDS = _w("ex ix ora ium ova ara yx ent ico on ly iva ano etra io")
_FLIGHT_CODES = _w("UA DL AA BA LH FR EK AF KL QF")
_PROMOS = _w("SAVE SPRING WELCOME VIP FLASH")
_COMPANY_SUFFIXES = (
    "Inc.", "Ltd", "Group", "Systems", "Labs", "Logistics", "Foods", "Bank", "Energy", "Outdoor Co.",
    "Health", "Telecom", "Motors", "Airways", "Insurance", "Studios", "Analytics", "Markets",
)

BRANDS = (
    "Amazon", "Apple", "Samsung", "Google", "Microsoft", "Nike", "Adidas", "IKEA", "Starbucks",
    "Netflix", "Spotify", "Uber", "Airbnb", "Tesla", "Sony", "Dell", "Lenovo", "Zara", "H&M", "Walmart",
    "Target", "Costco", "Best Buy", "eBay", "Etsy", "Shopify", "PayPal", "Visa", "Mastercard",
    "Verizon", "Vodafone", "T-Mobile", "Comcast", "Delta", "United Airlines", "Ryanair", "Lufthansa",
    "Emirates", "Marriott", "Hilton", "Booking.com", "Expedia", "DoorDash", "Deliveroo", "McDonald's",
    "Chipotle", "Domino's", "Coca-Cola", "Nestlé", "Unilever", "Dyson", "Philips", "Bosch", "Canon",
    "Nintendo", "Xbox", "PlayStation", "Garmin", "Fitbit", "Peloton", "Revolut", "Monzo", "Chase",
    "Wells Fargo", "HSBC", "Barclays", "Santander", "Fidelity", "Robinhood", "Coinbase", "FedEx", "UPS",
    "DHL", "USPS", "Royal Mail", "Hertz", "Avis",
)
AIRLINES = (
    "Delta", "United Airlines", "American Airlines", "Ryanair", "easyJet", "Lufthansa", "Emirates",
    "KLM", "Air France", "British Airways", "Qantas", "LATAM", "Southwest", "JetBlue", "Air Canada",
    "Turkish Airlines", "Iberia", "TAP Air Portugal",
)
HOTELS = (
    "Marriott", "Hilton", "Hyatt", "Holiday Inn", "Ibis", "Four Seasons", "Radisson",
    "the Ritz-Carlton", "Premier Inn", "Best Western", "Novotel", "Sheraton",
)
BANKS = (
    "Chase", "Wells Fargo", "Bank of America", "HSBC", "Barclays", "Santander", "Revolut", "Monzo",
    "Citi", "Capital One", "ING", "Deutsche Bank", "BNP Paribas", "Nubank", "N26",
)
PRODUCTS = (
    "iPhone 15", "iPhone 14 Pro", "Galaxy S23", "Galaxy Buds2", "Pixel 8", "Pixel Watch", "AirPods Pro",
    "MacBook Air", "iPad mini", "Kindle Paperwhite", "Echo Dot", "PS5", "Switch OLED", "Xbox Series X",
    "Surface Pro 9", "ThinkPad X1", "XPS 13", "Model 3", "Model Y", "Air Max 90", "Ultraboost 22",
    "Dyson V15", "Roomba j7", "Instant Pot", "Nespresso Vertuo", "GoPro Hero 12",
    "Apple Watch Series 9", "Fenix 7", "WH-1000XM5", "Quest 3", "Steam Deck", "Chromebook Plus",
)
PRODUCT_LINES = (
    "Aero", "Trail", "Nova", "Pulse", "Edge", "Core", "Flex", "Max", "Lite", "Pro",
)
CITIES = (
    "New York", "Los Angeles", "Chicago", "Houston", "Seattle", "Boston", "Austin", "Denver", "Miami",
    "Atlanta", "San Francisco", "Toronto", "Vancouver", "Montreal", "Mexico City", "São Paulo",
    "Rio de Janeiro", "Buenos Aires", "Bogotá", "Lima", "Santiago", "London", "Manchester", "Edinburgh",
    "Dublin", "Paris", "Lyon", "Berlin", "Munich", "Hamburg", "Zürich", "Vienna", "Amsterdam",
    "Brussels", "Madrid", "Barcelona", "Lisbon", "Porto", "Rome", "Milan", "Athens", "Istanbul",
    "Kraków", "Warsaw", "Prague", "Budapest", "Stockholm", "Oslo", "Copenhagen", "Helsinki",
    "Reykjavík", "Dubai", "Cairo", "Lagos", "Nairobi", "Accra", "Cape Town", "Johannesburg", "Mumbai",
    "Delhi", "Bangalore", "Singapore", "Bangkok", "Hanoi", "Tokyo", "Osaka", "Seoul", "Shanghai",
    "Hong Kong", "Sydney", "Melbourne", "Auckland",
)
COUNTRIES = (
    "the US", "Canada", "Mexico", "Brazil", "Argentina", "the UK", "Ireland", "France", "Germany",
    "Spain", "Portugal", "Italy", "Greece", "Poland", "the Netherlands", "Sweden", "Norway", "Japan",
    "South Korea", "India", "Nigeria", "Kenya", "South Africa", "Australia", "Thailand", "Vietnam",
    "Turkey", "Egypt", "Iceland", "Switzerland",
)
SALES = (
    "Black Friday", "Cyber Monday", "Prime Day", "the Boxing Day sale", "Singles' Day",
    "the Labor Day sale", "the Christmas sale",
)
EVENTS = (
    "Coachella", "Glastonbury", "Web Summit", "CES", "Comic-Con", "SXSW", "Oktoberfest", "Carnival",
    "Lollapalooza", "Primavera Sound", "Fashion Week", "WWDC", "the Eurovision final", "Burning Man",
    "Rock in Rio", "the Edinburgh Fringe", "PyCon", "Gamescom",
)
SPORT_EVENTS = (
    "the Super Bowl", "the World Cup", "Wimbledon", "the Champions League final", "the Olympics",
    "the Tour de France", "the NBA Finals", "the Ryder Cup", "the Six Nations", "the Copa América",
    "the US Open", "the Grand National",
)
RACES = (
    "the Boston Marathon", "the London Marathon", "the Berlin Marathon", "the NYC Marathon",
    "the Chicago Half", "a local 10K", "the Paris Marathon", "the Tokyo Marathon",
)
STREAMERS = (
    "Netflix", "Peacock", "DAZN", "ESPN+", "Sky Sports", "Paramount+", "YouTube TV",
    "Amazon Prime Video", "Hulu", "BT Sport", "fuboTV",
)
TEAMS = (
    "Arsenal", "Liverpool", "Manchester United", "Chelsea", "Real Madrid", "Barcelona", "Bayern Munich",
    "Juventus", "PSG", "Flamengo", "Boca Juniors", "the Lakers", "the Celtics", "the Warriors",
    "the Yankees", "the Red Sox", "the Chiefs", "the Eagles", "the Cowboys", "Ajax", "Benfica",
    "Celtic", "the All Blacks", "the Maple Leafs",
)
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
)
WEEKDAYS = (
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday",
)
RELATIVE_DATES = (
    "yesterday", "last week", "last weekend", "this morning", "two weeks ago", "last month",
    "on Christmas Eve", "over the holidays", "last night", "a month ago",
)
ADJ_GOOD = (
    "great", "amazing", "solid", "fantastic", "decent", "excellent", "really good", "superb", "awesome",
    "flawless", "surprisingly good", "top notch",
)
ADJ_BAD = (
    "terrible", "awful", "disappointing", "useless", "broken", "a nightmare", "horrible", "really bad",
    "unacceptable", "a joke", "mediocre", "painfully slow",
)
DISHES = (
    "ramen", "tacos", "pad thai", "burrito bowl", "margherita pizza", "pho", "biryani",
    "fish and chips", "croissants", "sushi", "shawarma", "pastel de nata", "dumplings",
)
EMOJI = (
    "😡", "🙄", "😂", "👍", "🔥", "❤️", "🙏", "😭", "🎉", "✈️", "⚽", "💸", "🤷", "😍", "👎", "🤦",
)
OPENERS = (
    "Honestly, ", "Ok so ", "Update: ", "PSA: ", "Not gonna lie, ", "Quick review: ", "Ugh. ", "FYI ",
    "Wow. ", "So ", "lol ", "Heads up: ", "Well, ", "Real talk: ",
)
CLOSERS = (
    " Never again.", " Would recommend.", " 10/10.", " Just saying.", " Do better.", " Thanks!",
    " Anyone else?", " smh", " Five stars.", " Still waiting.", " lol", " Rant over.", " Cheers.",
    " Not impressed.", " Will update.",
)

# ---------------------------------------------------------------------------------------------
# Sentence templates per domain. Slots are filled lazily; a slot used twice in one comment keeps
# its value (one "{brand}" per comment), which keeps multi-sentence comments coherent.
# ---------------------------------------------------------------------------------------------

TEMPLATES: dict[str, tuple[str, ...]] = {
    "retail": (
        "Ordered the {product} from {brand} {when} and it still hasn't shipped.",
        "Paid {money} for the {product} and the box arrived crushed.",
        "The {product} is {good}, battery lasts two full days.",
        "{brand} charged me twice for order {order}, total {money}.",
        "Got the {product} during {sale} for {money}, best deal I've seen.",
        "Returned the {product} to the {brand} store in {city} and they refused a refund.",
        "Honestly the {product} is {bad} after the last update.",
        "My {product} died after {num} weeks, {brand} support says it's out of warranty.",
        "Shoutout to {person} at the {brand} store in {city}, super helpful.",
        "Price went up {percent} since {month}, not buying from {brand} again.",
        "Delivery from {courier} came at {time} on {weekday}, nobody rang the bell.",
        "The {company} {line} {sku} is {good} for the price.",
        "Used code {promo} and saved {percent} on the {product}.",
        "Why does {brand} want {money} for a charger?",
        "The {product} I bought in {city} was a fake, {brand} should check their sellers.",
        "{brand} sent me the wrong color, order {order}.",
        "Compared the {product} with the {product2} and the {product2} wins on camera.",
        "Review after {num} months: the {product} is still {good}.",
    ),
    "support": (
        "Been on hold with {brand} for {num} minutes, ticket {ticket}.",
        "Called {brand} at {time} and got disconnected twice.",
        "{person} from {brand} support fixed my issue in five minutes, give her a raise.",
        "My internet with {telco} has been down since {date}.",
        "Third chat with {brand} this week, case {ticket} still open.",
        "{company} billed me {money} for a plan I cancelled in {month}.",
        "The app logs me out every time, {brand} please fix this.",
        "Support agent {first} promised a callback by {weekday}, nothing.",
        "Escalated to {person} ({user}) on Twitter, finally got a reply.",
        "Refund of {money} was approved {when} but never arrived.",
        "Why is the {brand} help center only open until {time}?",
        "The outage in {city} lasted {num} hours and {telco} offered a {money} credit.",
        "Emailed {email} three times about order {order}.",
        "Whoever runs the {company} helpdesk deserves a medal.",
        "Still waiting for {brand} to replace my {product}, ticket {ticket}.",
    ),
    "travel": (
        "Flew {airline} from {city} to {city2} on {date}, {num} hour delay and no explanation.",
        "{airline} lost my bag in {city}, file reference {ticket}.",
        "Stayed at the {hotel} in {city} for {num} nights, room was {good}.",
        "The {hotel} {city} charged {money} for breakfast, lol.",
        "Booked through {booking} and the host cancelled on {date}.",
        "Landed in {city} at {time} and the immigration queue took two hours.",
        "Trip to {country} in {month} was {good}, {person} was the best guide.",
        "Train from {city} to {city2} was {percent} late all week.",
        "{airline} upgraded us to business for free, thank you {first}!",
        "Paid {money} for a taxi from the airport in {city}, total scam.",
        "Anyone know a good hotel near {landmark} in {city}?",
        "Our flight {flight} got cancelled, {airline} rebooked us for {weekday}.",
        "Rented a car from {rental} in {city}, they added {money} in fees.",
        "{city} in {month} is {good}, go see {landmark} early in the morning.",
    ),
    "events": (
        "Tickets for {event} sold out in {num} minutes, the Ticketmaster site crashed.",
        "Saw {artist} live in {city} on {date}, absolutely {good}.",
        "Stage times at {event} changed again, {artist} now at {time}.",
        "Paid {money} for parking at {event}, never again.",
        "{artist} cancelled the {city} show on {date}, refunds through Ticketmaster.",
        "Volunteering at {event} in {city} this year with {person}.",
        "Queue for merch at {event} was {num} people long.",
        "Who's going to {event} on {weekday}? Meet at {landmark} at {time}.",
        "The {company} booth at {event} was {good}.",
        "{person} gave the best talk at {event}, slides are on her blog.",
    ),
    "sport": (
        "{team} were {bad} tonight, {player} missed a penalty.",
        "{player} scored twice and {team} won {score}.",
        "Can't believe {team} paid {bigmoney} for {player}.",
        "Watched {team} vs {team2} at a bar in {city} on {weekday}.",
        "Season tickets for {team} went up {percent}, the club doesn't care about fans.",
        "{player} to {team2} for {bigmoney}? Fake news.",
        "The {sport_event} stream on {streamer} kept buffering, missed the winner.",
        "Ran {race} on {date} in {time2}, new personal best!",
        "{team} have won {num} in a row since {month}.",
        "Referee {person} should never ref {team} again.",
        "Paid {money} for {sport_event} tickets and the view was {bad}.",
        "{player} looked {good} at {sport_event}, {team} fans must be thrilled.",
    ),
    "finance": (
        "{bank} froze my account for {num} days over a {money} transfer.",
        "Moved my savings to {bank} for the {percent} rate.",
        "{company} stock dropped {percent} after earnings on {date}.",
        "My card got declined in {city} even though I told {bank} I was travelling.",
        "{bank} charged a {money} fee for an international transfer to {country}.",
        "Bought {num} shares of {company} at {money}, wish me luck.",
        "The {bank} app update on {date} broke Face ID login.",
        "Mortgage rate from {bank} went from {percent} to {percent2}, great.",
        "{brand} is raising prices again by {percent}, cancelling my subscription.",
        "Got a phishing text pretending to be {bank} from {phone}.",
        "Tax refund of {money} finally hit my {bank} account on {date}.",
        "Invested {money} in {company} back in {year}, it's up {percent}.",
    ),
    "food": (
        "Ordered {dish} on {delivery} at {time}, arrived cold an hour later.",
        "The {dish} at {restaurant} in {city} is {good}.",
        "{restaurant} in {city} charged {money} for {dish}, portion was tiny.",
        "Lunch at {restaurant} with {person} on {date}, service was {bad}.",
        "Chef {person} at {restaurant} knows what she's doing.",
        "Best {dish} I've had outside {country}, {restaurant} in {city}.",
        "Found a hair in my {dish} from {restaurant}, they gave me {percent} off lol.",
        "{restaurant} closes at {time} on {weekday}s now, sad.",
    ),
    "social": (
        "Huge congrats to {person} on joining {company} in {city}!",
        "{user} you promised the giveaway results on {date}.",
        "Just finished my first week at {company}, {person} has been a {good} mentor.",
        "Anyone else seeing {brand} ads for things they only talked about?",
        "{person} and I are moving to {city} in {month}.",
        "Happy birthday {first}! See you at {restaurant} at {time}.",
        "The new {brand} logo looks {bad}.",
        "Who else is watching {sport_event} tonight?",
        "{company} laid off {num} people {when}, CEO {person} got a bonus.",
        "Met {person} at {event} in {city}, what a legend.",
        "Thanks {user} for the recommendation, {product} is {good}.",
    ),
    "plain": (
        "This is the worst experience I have had in a long time.",
        "works fine now, thanks for the help",
        "Not sure why this keeps happening but it's really annoying.",
        "Love it, would buy again.",
        "Does anyone actually read these reviews?",
        "Quality has gone downhill and nobody seems to care.",
        "The instructions were confusing but setup took ten minutes.",
        "Five stars for the packaging, two for the product.",
        "It's ok I guess. nothing special",
        "Customer service was polite but couldn't solve anything.",
        "Arrived early and works as described.",
        "i dont understand why the price keeps changing every day",
    ),
}
_DOMAINS = tuple(TEMPLATES)
# Relative weight of each domain (plain comments without entities are rarer but present).
_DOMAIN_WEIGHTS = (
    20, 14, 14, 8, 9, 10, 8, 10, 7,
)

ARTISTS = (
    "Taylor Swift", "Beyoncé", "Coldplay", "Bad Bunny", "Dua Lipa", "Ed Sheeran", "Billie Eilish",
    "Arctic Monkeys", "BTS", "Kendrick Lamar", "Rosalía", "Burna Boy", "Harry Styles", "Adele",
    "The Weeknd", "Olivia Rodrigo", "Stromae", "Måneskin",
)
PLAYERS_FIRST = (
    "Bukayo", "Mohamed", "Erling", "Kylian", "Vinícius", "Jude", "Harry", "Lionel", "Cristiano",
    "LeBron", "Stephen", "Jayson", "Aaron", "Patrick", "Son", "Alexia",
)
LANDMARKS = (
    "the Eiffel Tower", "Central Park", "the Colosseum", "Sagrada Família", "Big Ben",
    "the Golden Gate Bridge", "Shibuya Crossing", "the Brandenburg Gate", "the Acropolis",
    "Times Square", "the Opera House", "Christ the Redeemer", "Tower Bridge", "the Louvre",
)
RESTAURANT_HEADS = (
    "The Golden", "Casa", "Little", "Mama", "Blue", "Old", "La", "The Hungry", "Chez",
)
RESTAURANT_TAILS = (
    "Fork", "Lantern", "Kitchen", "Bistro", "Spoon", "Dragon", "Table", "Olive", "Garden", "Taqueria",
    "Noodle Bar", "Grill",
)
COURIERS = (
    "FedEx", "UPS", "DHL", "USPS", "Royal Mail", "Evri", "DPD", "Canada Post", "Correos",
)
GOOD_NOUNS = (
    "battery", "screen", "camera", "fit", "sound", "build quality", "staff", "food", "view", "price",
    "app", "seat", "checkout", "delivery",
)
SUPPORT_WORDS = (
    "I've", "tried", "restarting", "everything", "and", "nothing", "works", "the", "agent", "said",
    "to", "wait", "another", "week", "but", "this", "is", "already", "the", "third", "time", "they",
    "told", "me", "that",
)

# fmt: on


def _build_generators(rng: random.Random) -> dict[str, Callable[[], str]]:
    """Slot name -> zero-arg generator bound to `rng`. Kept as closures for speed."""
    rnd = rng.random
    randint = rng.randint

    def pick(seq):
        n = len(seq)
        return lambda: seq[int(rnd() * n)]

    def surname() -> str:
        # ~45% real surnames, the rest synthesized from syllables (50*19*30 combinations, and a
        # rare double-barrelled form) so new names keep appearing deep into a 100k-comment run.
        r = rnd()
        if r < 0.45:
            return REAL_SURNAMES[int(rnd() * len(REAL_SURNAMES))]
        s = (
            _ONSETS[int(rnd() * len(_ONSETS))]
            + _MIDS[int(rnd() * len(_MIDS))]
            + _SURNAME_ENDS[int(rnd() * len(_SURNAME_ENDS))]
        )
        if r > 0.97:
            s += "-" + REAL_SURNAMES[int(rnd() * len(REAL_SURNAMES))]
        return s

    first = pick(FIRST_NAMES)

    def person() -> str:
        return f"{first()} {surname()}"

    def company() -> str:
        r = rnd()
        if r < 0.35:
            return BRANDS[int(rnd() * len(BRANDS))]
        name = (
            _ONSETS[int(rnd() * len(_ONSETS))]
            + _MIDS[int(rnd() * len(_MIDS))].lower()
            + _COMPANY_ENDS[int(rnd() * len(_COMPANY_ENDS))]
        )
        if r < 0.7:
            return name
        return f"{name} {_COMPANY_SUFFIXES[int(rnd() * len(_COMPANY_SUFFIXES))]}"

    def money() -> str:
        r = rnd()
        if r < 0.55:
            v = randint(3, 1999)
            return f"${v}.{randint(0, 99):02d}" if rnd() < 0.5 else f"${v}"
        if r < 0.7:
            return f"€{randint(5, 900)}"
        if r < 0.8:
            return f"£{randint(2, 700)}"
        return f"{randint(10, 5000):,} dollars"

    def date() -> str:
        r = rnd()
        month = MONTHS[int(rnd() * 12)]
        day = randint(1, 28)
        if r < 0.3:
            return f"{month} {day}"
        if r < 0.45:
            return f"{day} {month} {randint(2019, 2025)}"
        if r < 0.55:
            return f"{randint(1, 12)}/{day}"
        if r < 0.65:
            return f"{randint(2019, 2025)}-{randint(1, 12):02d}-{day:02d}"
        return WEEKDAYS[int(rnd() * 7)]

    def time_() -> str:
        r = rnd()
        h = randint(1, 12)
        if r < 0.4:
            return f"{h}:{randint(0, 59):02d}{'am' if rnd() < 0.5 else 'pm'}"
        if r < 0.7:
            return f"{h} {'am' if rnd() < 0.5 else 'pm'}"
        if r < 0.85:
            return f"{randint(0, 23):02d}:{randint(0, 59):02d}"
        return "midnight" if rnd() < 0.5 else "noon"

    def percent() -> str:
        v = randint(2, 80)
        return f"{v}%" if rnd() < 0.7 else f"{v} percent"

    def user() -> str:
        f = FIRST_NAMES[int(rnd() * len(FIRST_NAMES))].lower()
        sep = "_" if rnd() < 0.5 else ""
        tail = _ONSETS[int(rnd() * len(_ONSETS))].lower() if rnd() < 0.5 else ""
        return f"@{f}{sep}{tail}{randint(1, 9999)}"

    def email() -> str:
        return f"{FIRST_NAMES[int(rnd() * len(FIRST_NAMES))].lower()}.{surname().lower()}@example.com"

    def order() -> str:
        r = rnd()
        if r < 0.4:
            return f"#{randint(100000, 99999999)}"
        if r < 0.7:
            return f"{randint(100, 999)}-{randint(1000000, 9999999)}-{randint(1000000, 9999999)}"
        return f"ORD{randint(10000, 9999999)}"

    def ticket() -> str:
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        return f"{letters[int(rnd() * 24)]}{letters[int(rnd() * 24)]}-{randint(10000, 999999)}"

    def sku() -> str:
        return f"{'XRTMKV'[int(rnd() * 6)]}{randint(10, 9999)}"

    def product() -> str:
        if rnd() < 0.6:
            return PRODUCTS[int(rnd() * len(PRODUCTS))]
        return f"{company().split(' ')[0]} {PRODUCT_LINES[int(rnd() * len(PRODUCT_LINES))]} {randint(2, 900)}"

    def player() -> str:
        return f"{PLAYERS_FIRST[int(rnd() * len(PLAYERS_FIRST))]} {surname()}"

    def restaurant() -> str:
        return (
            f"{RESTAURANT_HEADS[int(rnd() * len(RESTAURANT_HEADS))]} "
            f"{RESTAURANT_TAILS[int(rnd() * len(RESTAURANT_TAILS))]}"
        )

    def flight() -> str:
        return f"{_FLIGHT_CODES[int(rnd() * 10)]}{randint(10, 9999)}"

    def promo() -> str:
        return f"{_PROMOS[int(rnd() * 5)]}{randint(5, 75)}"

    def phone() -> str:
        return f"+1 {randint(200, 989)}-{randint(200, 999)}-{randint(1000, 9999)}"

    gens: dict[str, Callable[[], str]] = {
        "first": first,
        "person": person,
        "person2": person,
        "company": company,
        "brand": pick(BRANDS),
        "airline": pick(AIRLINES),
        "hotel": pick(HOTELS),
        "bank": pick(BANKS),
        "courier": pick(COURIERS),
        "product": product,
        "product2": product,
        "line": pick(PRODUCT_LINES),
        "sku": sku,
        "city": pick(CITIES),
        "city2": pick(CITIES),
        "country": pick(COUNTRIES),
        "landmark": pick(LANDMARKS),
        "event": pick(EVENTS),
        "artist": pick(ARTISTS),
        "sale": pick(SALES),
        "sport_event": pick(SPORT_EVENTS),
        "race": pick(RACES),
        "streamer": pick(STREAMERS),
        "telco": pick(
            (
                "Verizon",
                "Comcast",
                "Vodafone",
                "T-Mobile",
                "AT&T",
                "Virgin Media",
                "BT",
                "Orange",
                "Telstra",
                "Rogers",
                "Spectrum",
            )
        ),
        "booking": pick(("Airbnb", "Booking.com", "Expedia", "Vrbo", "Hotels.com")),
        "rental": pick(("Hertz", "Avis", "Enterprise", "Sixt", "Europcar", "Budget")),
        "delivery": pick(("DoorDash", "Uber Eats", "Deliveroo", "Grubhub", "Just Eat", "iFood")),
        "when": pick(RELATIVE_DATES),
        "bigmoney": lambda: f"${randint(2, 120)}.{randint(1, 9)} million",
        "team": pick(TEAMS),
        "team2": pick(TEAMS),
        "player": player,
        "date": date,
        "time": time_,
        "month": pick(MONTHS),
        "weekday": pick(WEEKDAYS),
        "year": lambda: str(randint(2008, 2024)),
        "money": money,
        "percent": percent,
        "percent2": percent,
        "num": lambda: str(randint(2, 90)),
        "score": lambda: f"{randint(1, 5)}-{randint(0, 3)}",
        "time2": lambda: f"{randint(2, 4)}:{randint(0, 59):02d}:{randint(0, 59):02d}",
        "user": user,
        "email": email,
        "order": order,
        "ticket": ticket,
        "flight": flight,
        "promo": promo,
        "phone": phone,
        "restaurant": restaurant,
        "dish": pick(DISHES),
        "good": pick(ADJ_GOOD),
        "bad": pick(ADJ_BAD),
    }
    return gens


class _Slots(dict):
    """format_map mapping that generates a slot on first use and then keeps it for the comment."""

    __slots__ = ("gens",)

    def __missing__(self, key: str) -> str:
        value = self.gens[key]()
        self[key] = value
        return value


def _typo(text: str, rng: random.Random) -> str:
    """Swap two adjacent letters somewhere in the text, like a fast thumb would."""
    if len(text) < 12:
        return text
    i = rng.randrange(1, len(text) - 2)
    a, b = text[i], text[i + 1]
    if not (a.isalpha() and b.isalpha()):
        return text
    return text[:i] + b + a + text[i + 2 :]


def _sentence_count(r: float) -> int:
    # Calibrated so the median comment is ~120-150 chars, ~10% exceed 400 chars and ~2.5% are
    # multi-paragraph reviews of 1,500-7,000 chars.
    if r < 0.32:
        return 1
    if r < 0.66:
        return 2
    if r < 0.82:
        return 3
    if r < 0.93:
        return 4 + int((r - 0.82) * 40)  # 4..8
    if r < 0.975:
        return 9 + int((r - 0.93) * 300)  # 9..22
    return 23 + int((r - 0.975) * 3400)  # 23..107 (up to ~7,000 chars)


def _paragraphs(sentences: list[str], rng: random.Random) -> str:
    if len(sentences) < 8:
        return " ".join(sentences)
    out: list[str] = []
    i = 0
    while i < len(sentences):
        k = rng.randint(3, 7)
        out.append(" ".join(sentences[i : i + k]))
        i += k
    return "\n\n".join(out)


def _comment(rng: random.Random, gens: dict[str, Callable[[], str]], n_sent: int) -> str:
    rnd = rng.random
    domain = rng.choices(_DOMAINS, weights=_DOMAIN_WEIGHTS)[0]
    slots = _Slots()
    slots.gens = gens
    sentences = []
    used: set[str] = set()
    for i in range(n_sent):
        # Long reviews wander across domains (a trip with a flight, a hotel, a meal...).
        if i and rnd() < 0.3:
            domain = _DOMAINS[int(rnd() * len(_DOMAINS))]
            slots = _Slots()
            slots.gens = gens
        tpls = TEMPLATES[domain]
        tpl = tpls[int(rnd() * len(tpls))]
        if tpl in used:  # people rarely write the same sentence twice: retry, then move on
            tpl = tpls[int(rnd() * len(tpls))]
            if tpl in used:
                domain = _DOMAINS[int(rnd() * len(_DOMAINS))]
                slots = _Slots()
                slots.gens = gens
                tpls = TEMPLATES[domain]
                tpl = tpls[int(rnd() * len(tpls))]
        used.add(tpl)
        sent = tpl.format_map(slots)
        if sent[0].islower():
            sent = sent[0].upper() + sent[1:]
        sentences.append(sent)
    text = _paragraphs(sentences, rng)
    r = rnd()
    if r < 0.12:
        text = OPENERS[int(rnd() * len(OPENERS))] + text[0].lower() + text[1:]
    elif r < 0.22:
        text += CLOSERS[int(rnd() * len(CLOSERS))]
    r = rnd()
    if r < 0.10:
        text += " " + EMOJI[int(rnd() * len(EMOJI))]
    elif r < 0.13:
        text = EMOJI[int(rnd() * len(EMOJI))] * rng.randint(1, 3) + " " + text
    r = rnd()
    if r < 0.07:
        text = text.lower()  # casual casing: "flew delta from boston..."
    elif r < 0.09:
        text = text.upper()  # shouting
    if rnd() < 0.06:
        text = _typo(text, rng)
    if rnd() < 0.03:
        text = text.replace(" ", "  ", 1)  # stray double space, as people type
    return text


def iter_generate(n: int, seed: int = 7) -> Iterator[str]:
    """Yield `n` comments; deterministic for a given (n, seed), and a prefix of a longer run."""
    rng = random.Random(seed)
    gens = _build_generators(rng)
    rnd = rng.random
    for _ in range(n):
        yield _comment(rng, gens, _sentence_count(rnd()))


def generate(n: int, seed: int = 7) -> list[str]:
    """Return `n` realistic English comments (deterministic; generate(k) is a prefix of generate(n>k))."""
    return list(iter_generate(n, seed))


def long_texts(k: int, seed: int = 11, chars: int = 20_000) -> list[str]:
    """Return `k` very long texts (~`chars` characters each): multi-paragraph review dumps."""
    rng = random.Random(seed)
    gens = _build_generators(rng)
    out = []
    for _ in range(k):
        parts: list[str] = []
        size = 0
        while size < chars:
            part = _comment(rng, gens, rng.randint(3, 8))
            parts.append(part)
            size += len(part) + 2
        out.append("\n\n".join(parts)[:chars].rsplit(" ", 1)[0])
    return out


def _percentile(sorted_vals: list[int], q: float) -> int:
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


def stats(texts: list[str]) -> str:
    lengths = sorted(len(t) for t in texts)
    n = len(texts)
    lines = [f"documents: {n:,}   total chars: {sum(lengths):,}"]
    lines.append(
        "length percentiles (chars): "
        + "  ".join(
            f"p{int(q * 100)}={_percentile(lengths, q)}" for q in (0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
        )
        + f"  max={lengths[-1]}"
    )
    lines.append(
        f"share > 400 chars: {sum(x > 400 for x in lengths) / n:.1%}   > 1000: "
        f"{sum(x > 1000 for x in lengths) / n:.1%}   > 5000: {sum(x > 5000 for x in lengths)}"
    )
    lines.append("distinct whitespace tokens as documents accumulate (new strings keep arriving):")
    seen: set[str] = set()
    step = max(1, n // 10)
    prev = 0
    for i, t in enumerate(texts, 1):
        seen.update(t.split())
        if i % step == 0 or i == n:
            lines.append(f"  after {i:>8,} docs: {len(seen):>9,} distinct (+{len(seen) - prev:,})")
            prev = len(seen)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--stats", action="store_true", help="print length percentiles and token growth")
    ap.add_argument("--show", type=int, default=0, help="print the first N comments")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    texts = generate(args.n, args.seed)
    dt = time.perf_counter() - t0
    for t in texts[: args.show]:
        print(repr(t))
    if args.stats:
        print(f"generated in {dt:.2f}s ({args.n / dt:,.0f} docs/s)")
        print(stats(texts))


if __name__ == "__main__":
    main()
