// A console tool over DigitalHumanClient; tests/integration/test_dotnet.py drives it.
//
//   mono dh.exe templates SERVER
//   mono dh.exe open      SERVER TEMPLATE OFFER.sdp ANSWER.sdp
//   mono dh.exe speak     SERVER SESSION TOKEN AUDIO_FILE [CONTENT_TYPE]
//   mono dh.exe say       SERVER SESSION TOKEN TEXT
//   mono dh.exe chat      SERVER SESSION TOKEN TEXT    (the server's reply engine answers)
//   mono dh.exe interrupt SERVER SESSION TOKEN
//   mono dh.exe state     SERVER SESSION TOKEN
//   mono dh.exe stats     SERVER
//   mono dh.exe grant     SERVER TEMPLATE [TTL_S]   (needs the key: what a page's backend does)
//
// The server key, when the server has one, comes from the DIGITAL_HUMAN_KEY variable.
// Output: one "name=value" line per figure; errors go to stderr with exit status 1.
using System;
using System.Collections.Generic;
using System.IO;
using System.Net.WebSockets;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace DigitalHuman
{
    static class Program
    {
        static readonly Dictionary<string, string> AudioTypes = new Dictionary<string, string>
        {
            { ".wav", "audio/wav" }, { ".mp3", "audio/mpeg" }, { ".ogg", "audio/ogg" }, { ".webm", "audio/webm" },
            { ".pcm", "audio/pcm;rate=16000" },  // raw s16le mono at 16 kHz, as a TTS engine writes it
        };

        static int Main(string[] args)
        {
            if (args.Length < 2)
            {
                Console.Error.WriteLine("usage: dh.exe templates|open|speak|say|chat|interrupt|state|stats|grant SERVER ... (see Program.cs)");
                return 2;
            }
            try
            {
                Run(args).GetAwaiter().GetResult();
                return 0;
            }
            catch (DigitalHumanException e)
            {
                Console.Error.WriteLine("server error " + e.Message);
                return 1;
            }
            catch (Exception e) when (e is IOException || e is FormatException || e is System.Net.Http.HttpRequestException || e is IndexOutOfRangeException || e is KeyNotFoundException)
            {
                Console.Error.WriteLine("error: " + e.Message);
                return 1;
            }
        }

        static async Task Run(string[] args)
        {
            var client = new DigitalHumanClient(args[1], Environment.GetEnvironmentVariable("DIGITAL_HUMAN_KEY"));
            switch (args[0])
            {
                case "templates":
                    var list = await client.ListTemplates();
                    Console.WriteLine("renderer=" + list.Renderer);
                    foreach (var t in list.Templates)
                        Console.WriteLine("template=" + t.Id + " kind=" + t.Kind + " size=" + t.Width + "x" + t.Height + " ready=" + t.Ready);
                    break;
                case "open":
                    var opened = await client.CreateSession(args[2], File.ReadAllText(args[3]));
                    File.WriteAllText(args[4], opened.AnswerSdp);
                    Console.WriteLine("session_id=" + opened.Id);
                    Console.WriteLine("token=" + opened.Token);
                    break;
                case "speak":
                    var file = args[4];
                    var type = args.Length > 5 ? args[5] : AudioTypes[Path.GetExtension(file).ToLowerInvariant()];
                    Print(await client.ForSession(args[2], args[3]).Speak(File.ReadAllBytes(file), type));
                    break;
                case "say":
                    Print(await client.ForSession(args[2], args[3]).Say(args[4]));
                    break;
                case "chat":
                    Console.WriteLine("turn_id=" + await client.ForSession(args[2], args[3]).ChatAsync(args[4]));
                    break;
                case "interrupt":
                    await client.ForSession(args[2], args[3]).Interrupt();
                    Console.WriteLine("interrupted=true");
                    break;
                case "state":
                    Print(await client.ForSession(args[2], args[3]).State());
                    break;
                case "socket":  // opens the live audio socket (token as a subprotocol), starts and ends a stream
                    using (var socket = await client.ForSession(args[2], args[3]).OpenAudioSocket())
                    {
                        Console.WriteLine("protocol=" + socket.SubProtocol);
                        var start = Encoding.UTF8.GetBytes("{\"type\":\"start\",\"sample_rate\":16000}");
                        await socket.SendAsync(new ArraySegment<byte>(start), WebSocketMessageType.Text, true, CancellationToken.None);
                        var buffer = new byte[4096];
                        var got = await socket.ReceiveAsync(new ArraySegment<byte>(buffer), CancellationToken.None);
                        Console.WriteLine("reply=" + Encoding.UTF8.GetString(buffer, 0, got.Count));
                        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
                    }
                    break;
                case "stats":
                    Print(await client.Stats());
                    break;
                case "grant":
                    var ttl = args.Length > 3 ? int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture) : 60;
                    var grant = await client.CreateGrant(new[] { args[2] }, ttl);
                    Console.WriteLine("grant=" + grant.Token);
                    Console.WriteLine("expires=" + grant.Expires.ToString(System.Globalization.CultureInfo.InvariantCulture));
                    break;
                default:
                    throw new IOException("unknown command " + args[0]);
            }
        }

        static void Print(Utterance u)
        {
            Console.WriteLine("utterance_id=" + u.Id);
            Console.WriteLine("duration_s=" + u.DurationSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        static void Print(Dictionary<string, object> map)
        {
            foreach (var pair in map)
            {
                var value = pair.Value;
                if (value is Dictionary<string, object> || value is List<object>) continue;  // scalars only
                var text = value is double ? ((double)value).ToString(System.Globalization.CultureInfo.InvariantCulture)
                    : Convert.ToString(value);
                Console.WriteLine(pair.Key + "=" + text);
            }
        }
    }
}
