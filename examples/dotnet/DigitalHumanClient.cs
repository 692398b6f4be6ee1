// A small client for the digital-human streamer's HTTP API (docs/api.md).
//
// Plain HttpClient and a tiny JSON reader, so it builds anywhere: ASP.NET Core (dotnet build)
// as well as Mono's mcs:  mcs -r:System.Net.Http.dll DigitalHumanClient.cs Program.cs
// On .NET 6+ you may swap MiniJson for System.Text.Json; the API shapes stay the same.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace DigitalHuman
{
    /// <summary>The server answered with an error: its HTTP status and its message.</summary>
    public class DigitalHumanException : Exception
    {
        public int StatusCode { get; private set; }

        public DigitalHumanException(int statusCode, string message)
            : base(statusCode + ": " + message)
        {
            StatusCode = statusCode;
        }
    }

    public class TemplateInfo
    {
        public string Id;
        public string Name;
        public string Kind;
        public int Frames;
        public int Width;
        public int Height;
        public double WelcomeSeconds;
        public string WelcomeText;
        /// <summary>What framed the face: "dwpose", "fan" or "haar"; Degraded: no landmarks.</summary>
        public string Faces;
        public bool Degraded;
        public bool Ready;
    }

    public class TemplateList
    {
        public List<TemplateInfo> Templates = new List<TemplateInfo>();
        /// <summary>The renderer in use: "lite" or "musetalk".</summary>
        public string Renderer;
    }

    /// <summary>A single-use session grant for a browser: it opens one session, then is spent.</summary>
    public class Grant
    {
        public string Token;
        /// <summary>Unix time after which the grant no longer opens a session.</summary>
        public long Expires;
    }

    public class Utterance
    {
        public string Id;
        public double DurationSeconds;
    }

    /// <summary>Server-wide calls: templates, new sessions, statistics.</summary>
    public class DigitalHumanClient
    {
        readonly HttpClient http;
        readonly Uri server;
        readonly string key;

        /// <param name="server">e.g. "http://127.0.0.1:8080"</param>
        /// <param name="key">the server key, when the server has one (it controls every session)</param>
        /// <param name="http">share one HttpClient per process; null creates one</param>
        public DigitalHumanClient(string server, string key = null, HttpClient http = null)
        {
            this.server = new Uri(server.TrimEnd('/') + "/");
            this.key = key;
            this.http = http ?? new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        }

        public async Task<TemplateList> ListTemplates()
        {
            var json = (Dictionary<string, object>)await Send(HttpMethod.Get, "api/templates", null, key);
            var list = new TemplateList { Renderer = MiniJson.Str(json, "renderer") };
            foreach (var item in (List<object>)json["templates"])
            {
                var t = (Dictionary<string, object>)item;
                list.Templates.Add(new TemplateInfo
                {
                    Id = MiniJson.Str(t, "id"),
                    Name = MiniJson.Str(t, "name"),
                    Kind = MiniJson.Str(t, "kind"),
                    Frames = (int)MiniJson.Num(t, "frames"),
                    Width = (int)MiniJson.Num(t, "width"),
                    Height = (int)MiniJson.Num(t, "height"),
                    WelcomeSeconds = MiniJson.Num(t, "welcome_seconds"),
                    WelcomeText = MiniJson.Str(t, "welcome_text"),
                    Faces = MiniJson.Str(t, "faces"),
                    Degraded = t.ContainsKey("degraded") && Equals(t["degraded"], true),
                    Ready = !t.ContainsKey("ready") || Equals(t["ready"], true),
                });
            }
            return list;
        }

        /// <summary>
        /// Opens a session from the viewer's SDP offer (ICE gathering complete). Hand
        /// <see cref="SessionClient.AnswerSdp"/> back to the viewer.
        /// </summary>
        public async Task<SessionClient> CreateSession(string template, string offerSdp)
        {
            var body = "{\"template\":" + MiniJson.Quote(template) + ",\"sdp\":" + MiniJson.Quote(offerSdp)
                + ",\"type\":\"offer\"}";
            var json = (Dictionary<string, object>)await Send(
                HttpMethod.Post, "api/sessions", Content(body), key);
            var session = ForSession(MiniJson.Str(json, "session_id"), MiniJson.Str(json, "token"));
            session.AnswerSdp = MiniJson.Str(json, "sdp");
            session.ChatAvailable = json.ContainsKey("chat") && Equals(json["chat"], true);
            return session;
        }

        /// <summary>
        /// POST /api/grants (needs the server key): a short-lived, single-use grant the page opens
        /// its session with, so the browser never sees the key. Mint one per page load (and per
        /// reconnect: embed.js calls the page's grant function again).
        /// </summary>
        public async Task<Grant> CreateGrant(string[] templates, int ttlSeconds = 60, double maxSessionSeconds = 0)
        {
            var quoted = new List<string>();
            foreach (var t in templates) quoted.Add(MiniJson.Quote(t));
            var body = "{\"templates\":[" + string.Join(",", quoted) + "],\"ttl_s\":"
                + ttlSeconds.ToString(CultureInfo.InvariantCulture)
                + (maxSessionSeconds > 0 ? ",\"max_session_s\":" + maxSessionSeconds.ToString(CultureInfo.InvariantCulture) : "")
                + "}";
            var json = (Dictionary<string, object>)await Send(HttpMethod.Post, "api/grants", Content(body), key);
            return new Grant { Token = MiniJson.Str(json, "grant"), Expires = (long)MiniJson.Num(json, "expires") };
        }

        /// <summary>Controls a session that a browser opened (it passes you the id and token).</summary>
        public SessionClient ForSession(string sessionId, string token)
        {
            return new SessionClient(this, sessionId, token ?? key);
        }

        /// <summary>GET /api/stats: requests, completion rate, devices, sessions, latency, stalls.</summary>
        public async Task<Dictionary<string, object>> Stats()
        {
            return (Dictionary<string, object>)await Send(HttpMethod.Get, "api/stats", null, key);
        }

        internal static HttpContent Content(string json)
        {
            return new StringContent(json, Encoding.UTF8, "application/json");
        }

        internal Uri Resolve(string path) { return new Uri(server, path); }

        internal async Task<object> Send(HttpMethod method, string path, HttpContent content, string bearer)
        {
            using (var request = new HttpRequestMessage(method, Resolve(path)))
            {
                request.Content = content;
                if (!string.IsNullOrEmpty(bearer))
                    request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
                using (var response = await http.SendAsync(request).ConfigureAwait(false))
                {
                    var text = await response.Content.ReadAsStringAsync().ConfigureAwait(false);
                    object json = null;
                    try { json = text.Length > 0 ? MiniJson.Parse(text) : null; }
                    catch (FormatException) { json = null; }
                    if (!response.IsSuccessStatusCode)
                    {
                        var map = json as Dictionary<string, object>;
                        var message = map != null && map.ContainsKey("error") ? Convert.ToString(map["error"]) : text;
                        throw new DigitalHumanException((int)response.StatusCode, message);
                    }
                    return json;
                }
            }
        }
    }

    /// <summary>One session: speak, say, interrupt, state, end.</summary>
    public class SessionClient
    {
        readonly DigitalHumanClient client;
        public string Id { get; private set; }
        public string Token { get; private set; }
        /// <summary>Set by CreateSession: the answer for the viewer's peer connection.</summary>
        public string AnswerSdp { get; internal set; }
        /// <summary>Set by CreateSession: the server has a reply engine (llm_url), so ChatAsync works.</summary>
        public bool ChatAvailable { get; internal set; }

        internal SessionClient(DigitalHumanClient client, string id, string token)
        {
            this.client = client;
            Id = id;
            Token = token;
        }

        string Path(string tail) { return "api/sessions/" + Uri.EscapeDataString(Id) + tail; }

        /// <summary>
        /// Speaks audio: wav, mp3, ogg, webm, or raw PCM: "audio/pcm;rate=16000" for signed 16-bit
        /// little-endian mono (what TTS engines and BitConverter give), "audio/L16;rate=16000" for
        /// big-endian (RFC 2586).
        /// Returns once it is queued; the events channel says when it is spoken.
        /// </summary>
        public async Task<Utterance> Speak(byte[] audio, string contentType)
        {
            var content = new ByteArrayContent(audio);
            content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
            return ToUtterance(await client.Send(HttpMethod.Post, Path("/speak"), content, Token));
        }

        /// <summary>Has the server's TTS say the text (fails with 503/400 when it has none).</summary>
        public async Task<Utterance> Say(string text)
        {
            var body = DigitalHumanClient.Content("{\"text\":" + MiniJson.Quote(text) + "}");
            return ToUtterance(await client.Send(HttpMethod.Post, Path("/say"), body, Token));
        }

        /// <summary>
        /// Opens the live audio WebSocket (s16le mono PCM in, session events out). The token rides
        /// in Sec-WebSocket-Protocol beside "streamer-audio", never in the URL (proxies log those).
        /// </summary>
        public async Task<ClientWebSocket> OpenAudioSocket()
        {
            var socket = new ClientWebSocket();
            socket.Options.AddSubProtocol("streamer-audio");
            socket.Options.AddSubProtocol("token." + Token);
            var http = client.Resolve(Path("/audio"));
            var uri = new UriBuilder(http) { Scheme = http.Scheme == "https" ? "wss" : "ws" }.Uri;
            await socket.ConnectAsync(uri, CancellationToken.None);
            return socket;
        }

        /// <summary>
        /// Asks the server's reply engine (POST /chat): the streamer's LLM answers aloud, sentence by
        /// sentence. Returns the turn id; the session's events (reply_text, reply_ended, …) carry it.
        /// Fails with 409 when the server has no llm_url: then push your own TTS audio with Speak.
        /// </summary>
        public async Task<string> ChatAsync(string text)
        {
            var body = DigitalHumanClient.Content("{\"text\":" + MiniJson.Quote(text) + "}");
            var json = (Dictionary<string, object>)await client.Send(HttpMethod.Post, Path("/chat"), body, Token);
            return MiniJson.Str(json, "turn_id");
        }

        /// <summary>Drops queued speech and stops a reply being written (its LLM stream is closed).</summary>
        public Task Interrupt()
        {
            return client.Send(HttpMethod.Post, Path("/interrupt"), null, Token);
        }

        /// <summary>The session JSON: state, queued_seconds, utterances, stalls, renderer, …</summary>
        public async Task<Dictionary<string, object>> State()
        {
            return (Dictionary<string, object>)await client.Send(HttpMethod.Get, Path(""), null, Token);
        }

        public Task Close()
        {
            return client.Send(HttpMethod.Delete, Path(""), null, Token);
        }

        static Utterance ToUtterance(object json)
        {
            var map = (Dictionary<string, object>)json;
            return new Utterance { Id = MiniJson.Str(map, "utterance_id"), DurationSeconds = MiniJson.Num(map, "duration_s") };
        }
    }

    /// <summary>
    /// Just enough JSON: objects become Dictionary&lt;string, object&gt;, arrays List&lt;object&gt;,
    /// numbers double, plus string, bool and null.
    /// </summary>
    public static class MiniJson
    {
        public static object Parse(string text)
        {
            int i = 0;
            var value = ReadValue(text, ref i);
            SkipSpace(text, ref i);
            if (i != text.Length) throw new FormatException("trailing characters after JSON at " + i);
            return value;
        }

        public static string Str(Dictionary<string, object> map, string name)
        {
            object value;
            return map.TryGetValue(name, out value) && value != null ? Convert.ToString(value, CultureInfo.InvariantCulture) : null;
        }

        public static double Num(Dictionary<string, object> map, string name)
        {
            object value;
            return map.TryGetValue(name, out value) && value is double ? (double)value : 0.0;
        }

        public static string Quote(string s)
        {
            var b = new StringBuilder("\"");
            foreach (var c in s)
            {
                switch (c)
                {
                    case '"': b.Append("\\\""); break;
                    case '\\': b.Append("\\\\"); break;
                    case '\n': b.Append("\\n"); break;
                    case '\r': b.Append("\\r"); break;
                    case '\t': b.Append("\\t"); break;
                    default:
                        if (c < ' ') b.Append("\\u").Append(((int)c).ToString("x4"));
                        else b.Append(c);
                        break;
                }
            }
            return b.Append('"').ToString();
        }

        static void SkipSpace(string s, ref int i)
        {
            while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
        }

        static object ReadValue(string s, ref int i)
        {
            SkipSpace(s, ref i);
            if (i >= s.Length) throw new FormatException("unexpected end of JSON");
            char c = s[i];
            if (c == '{') return ReadObject(s, ref i);
            if (c == '[') return ReadArray(s, ref i);
            if (c == '"') return ReadString(s, ref i);
            if (Literal(s, ref i, "true")) return true;
            if (Literal(s, ref i, "false")) return false;
            if (Literal(s, ref i, "null")) return null;
            int start = i;
            while (i < s.Length && "+-0123456789.eE".IndexOf(s[i]) >= 0) i++;
            double number;
            if (i == start || !double.TryParse(s.Substring(start, i - start), NumberStyles.Float, CultureInfo.InvariantCulture, out number))
                throw new FormatException("bad JSON value at " + start);
            return number;
        }

        static bool Literal(string s, ref int i, string word)
        {
            if (string.CompareOrdinal(s, i, word, 0, word.Length) != 0) return false;
            i += word.Length;
            return true;
        }

        static Dictionary<string, object> ReadObject(string s, ref int i)
        {
            var map = new Dictionary<string, object>();
            i++;  // {
            SkipSpace(s, ref i);
            if (i < s.Length && s[i] == '}') { i++; return map; }
            while (true)
            {
                SkipSpace(s, ref i);
                if (i >= s.Length || s[i] != '"') throw new FormatException("expected a key at " + i);
                var name = ReadString(s, ref i);
                SkipSpace(s, ref i);
                if (i >= s.Length || s[i] != ':') throw new FormatException("expected ':' at " + i);
                i++;
                map[name] = ReadValue(s, ref i);
                SkipSpace(s, ref i);
                if (i < s.Length && s[i] == ',') { i++; continue; }
                if (i < s.Length && s[i] == '}') { i++; return map; }
                throw new FormatException("expected ',' or '}' at " + i);
            }
        }

        static List<object> ReadArray(string s, ref int i)
        {
            var list = new List<object>();
            i++;  // [
            SkipSpace(s, ref i);
            if (i < s.Length && s[i] == ']') { i++; return list; }
            while (true)
            {
                list.Add(ReadValue(s, ref i));
                SkipSpace(s, ref i);
                if (i < s.Length && s[i] == ',') { i++; continue; }
                if (i < s.Length && s[i] == ']') { i++; return list; }
                throw new FormatException("expected ',' or ']' at " + i);
            }
        }

        static string ReadString(string s, ref int i)
        {
            var b = new StringBuilder();
            i++;  // opening quote
            while (i < s.Length)
            {
                char c = s[i++];
                if (c == '"') return b.ToString();
                if (c != '\\') { b.Append(c); continue; }
                if (i >= s.Length) break;
                char e = s[i++];
                switch (e)
                {
                    case 'n': b.Append('\n'); break;
                    case 'r': b.Append('\r'); break;
                    case 't': b.Append('\t'); break;
                    case 'b': b.Append('\b'); break;
                    case 'f': b.Append('\f'); break;
                    case 'u':
                        if (i + 4 > s.Length) throw new FormatException("short \\u escape");
                        b.Append((char)int.Parse(s.Substring(i, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                        i += 4;
                        break;
                    default: b.Append(e); break;  // \" \\ \/
                }
            }
            throw new FormatException("unterminated JSON string");
        }
    }
}
