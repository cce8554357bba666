"""The word lists and sentence templates bench/corpus.py builds comments from.

Written for this project (no downloads, no third-party data). Fixed lists give realistic, frequent
entities; the syllable lists (ONSETS, MIDS, SURNAME_ENDS, COMPANY_ENDS) let bench/corpus.py synthesize
surnames and company names that keep producing unseen strings as the number of comments grows.
"""

from __future__ import annotations


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

ONSETS = _w(
    "Bar Kel Mor Ash Dun Fen Gal Hal Iv Jor Lin Mar Nor Ost Pem Quin Rad Sel Tor Vel Wex Yar "
    "Zan Cor Bren Stan Hol Mack Pet Ros Al Bel Cas Dra Ev Far Gor Hen Kir Lor Mal Nav Or Pra "
    "Riv Sar Tal Ul Var Wil"
)
MIDS = [*_w("a e i o u an en in or ar el il on ur ri ro la le"), ""]
SURNAME_ENDS = _w(
    "ford sen son ski ova ez ini well berg stein ton ley ham ov ak ero ard ich man dottir "
    "quist wood field ridge worth mont ssen vic enko oglu"
)
COMPANY_ENDS = _w("ex ix ora ium ova ara yx ent ico on ly iva ano etra io")
FLIGHT_CODES = _w("UA DL AA BA LH FR EK AF KL QF")
PROMOS = _w("SAVE SPRING WELCOME VIP FLASH")
COMPANY_SUFFIXES = (
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
DOMAINS = tuple(TEMPLATES)
# Relative weight of each domain (plain comments without entities are rarer but present).
DOMAIN_WEIGHTS = (
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

TELCOS = (
    "Verizon", "Comcast", "Vodafone", "T-Mobile", "AT&T", "Virgin Media", "BT", "Orange", "Telstra",
    "Rogers", "Spectrum",
)
BOOKING_SITES = ("Airbnb", "Booking.com", "Expedia", "Vrbo", "Hotels.com")
CAR_RENTALS = ("Hertz", "Avis", "Enterprise", "Sixt", "Europcar", "Budget")
DELIVERY_APPS = ("DoorDash", "Uber Eats", "Deliveroo", "Grubhub", "Just Eat", "iFood")

# fmt: on
